//! Generates the C header of the C ABI (src/ffi/) with cbindgen.
//!
//! Writes `$OUT_DIR/zmws.h` (the C header) and `$OUT_DIR/zmws_ffi.h` (the
//! same declarations without preprocessor lines, comments or C++ guards, for
//! PHP's `FFI::cdef`/`FFI::load`). It never writes into the source tree:
//! `make header` copies both into include/, and tests/c/check_header.sh fails
//! when the committed copies differ from a fresh generation.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src/ffi");

    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cannot read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate the zmws header");
    let mut text = Vec::new();
    bindings.write(&mut text);
    let header = String::from_utf8(text).expect("cbindgen wrote non-UTF-8 text");
    write_if_changed(&out.join("zmws.h"), &header);
    write_if_changed(&out.join("zmws_ffi.h"), &php_declarations(&header));
}

fn write_if_changed(path: &PathBuf, text: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// The header reduced to what PHP's FFI parser accepts: no preprocessor
/// lines, no `#if __cplusplus` blocks (whose `extern "C" {` PHP would read),
/// no comments, no blank-line runs. PHP's FFI knows `bool`, `size_t` and the
/// `<stdint.h>` types without includes.
fn php_declarations(header: &str) -> String {
    let mut out = String::new();
    let mut skip_depth = 0usize; // nesting depth inside an `#if` about __cplusplus
    let mut in_comment = false;
    let mut blank = true;
    for line in header.lines() {
        let trimmed = line.trim_start();
        if let Some(directive) = trimmed.strip_prefix('#') {
            let directive = directive.trim_start();
            if directive.starts_with("if") {
                if skip_depth > 0 || directive.contains("__cplusplus") {
                    skip_depth += 1;
                }
            } else if directive.starts_with("endif") && skip_depth > 0 {
                skip_depth -= 1;
            }
            continue;
        }
        if skip_depth > 0 {
            continue;
        }
        let code = strip_comments(line, &mut in_comment);
        let code = code.trim_end();
        if code.trim().is_empty() {
            // A blank line stays (once); a comment-only line goes entirely.
            if line.trim().is_empty() && !blank {
                out.push('\n');
                blank = true;
            }
            continue;
        }
        assert!(!code.contains("extern \"C\""), "extern \"C\" left in the PHP declarations: {code}");
        out.push_str(code);
        out.push('\n');
        blank = false;
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Removes `/* … */` and `// …` comments from one line (the header has no
/// string literals in declarations).
fn strip_comments(line: &str, in_comment: &mut bool) -> String {
    let mut out = String::new();
    let mut rest = line;
    loop {
        if *in_comment {
            match rest.find("*/") {
                Some(end) => {
                    rest = &rest[end + 2..];
                    *in_comment = false;
                }
                None => return out,
            }
        }
        let block = rest.find("/*");
        let line_c = rest.find("//");
        match (block, line_c) {
            (Some(b), Some(l)) if l < b => {
                out.push_str(&rest[..l]);
                return out;
            }
            (None, Some(l)) => {
                out.push_str(&rest[..l]);
                return out;
            }
            (Some(b), _) => {
                out.push_str(&rest[..b]);
                rest = &rest[b + 2..];
                *in_comment = true;
            }
            (None, None) => {
                out.push_str(rest);
                return out;
            }
        }
    }
}
