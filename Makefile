# zmws: C library build, header generation and installation.
#
#   make                         build target/release/libzmws.{so,a}
#   make header                  copy the header build.rs generated into include/
#   make check-header            fail if include/ differs from a fresh generation
#   make examples                build examples/c against target/release
#   make test-c                  C tests, examples, install check, valgrind (tests/c/run.sh)
#   make install PREFIX=/opt/zmws [DESTDIR=...]
#                                lib/libzmws.{so,a}, include/zmws.h,
#                                lib/pkgconfig/zmws.pc, share/zmws/zmws_ffi.h
#   make uninstall PREFIX=...
#
# After installing: cc app.c $(pkg-config --cflags --libs zmws)
# (with PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig for a non-standard PREFIX).

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CARGO ?= cargo
INSTALL ?= install

RELEASE := target/release
VERSION := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)

ifeq ($(shell uname -s),Darwin)
SHLIB := libzmws.dylib
PRIVATE_LIBS := -lc++ -framework Security -framework CoreFoundation -lSystem
else
SHLIB := libzmws.so
# What the static library needs besides itself: libzmq is C++, Rust's std
# needs the usual glibc pieces.
PRIVATE_LIBS := -lstdc++ -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
endif

.PHONY: all lib header check-header examples test-c install uninstall clean-c

all: lib

lib:
	$(CARGO) build --release --locked --lib

header:
	tests/c/check_header.sh --update

check-header:
	tests/c/check_header.sh

examples: lib
	$(MAKE) -C examples/c

test-c:
	tests/c/run.sh

install: lib
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(DATADIR)/zmws
	$(INSTALL) -m 0755 $(RELEASE)/$(SHLIB) $(DESTDIR)$(LIBDIR)/$(SHLIB)
	$(INSTALL) -m 0644 $(RELEASE)/libzmws.a $(DESTDIR)$(LIBDIR)/libzmws.a
	$(INSTALL) -m 0644 include/zmws.h $(DESTDIR)$(INCLUDEDIR)/zmws.h
	$(INSTALL) -m 0644 include/zmws_ffi.h $(DESTDIR)$(DATADIR)/zmws/zmws_ffi.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' -e 's|@PRIVATE_LIBS@|$(PRIVATE_LIBS)|g' \
	    zmws.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/zmws.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/zmws.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(SHLIB) $(DESTDIR)$(LIBDIR)/libzmws.a $(DESTDIR)$(INCLUDEDIR)/zmws.h \
	      $(DESTDIR)$(PKGCONFIGDIR)/zmws.pc $(DESTDIR)$(DATADIR)/zmws/zmws_ffi.h
	-rmdir $(DESTDIR)$(DATADIR)/zmws 2>/dev/null

clean-c:
	rm -rf tests/c/build
	$(MAKE) -C examples/c clean
