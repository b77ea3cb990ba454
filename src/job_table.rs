//! The broker's table of job records: a slab of records plus an index from
//! job id to slot.
//!
//! A broker may hold a million queued jobs, so the table is built for
//! memory. Records live in one `Vec` (a freed slot is reused by the next
//! insert), and the index is a `hashbrown::HashTable<u32>`: 4 bytes and a
//! control byte per bucket, hashed by the id's 64 random bits. Growing the
//! index therefore copies a few bytes per job, not whole records, which keeps
//! the peak during growth small (a `HashMap<JobId, Job>` would briefly hold
//! two copies of every record).

use hashbrown::HashTable;

use crate::job::JobId;

/// The hash of a job id: its low 64 bits are random (see [`JobId`]).
fn hash(id: &JobId) -> u64 {
    id.0 as u64
}

/// Job records by id.
pub struct JobTable<V> {
    slots: Vec<Option<(JobId, V)>>,
    free: Vec<u32>,
    index: HashTable<u32>,
}

impl<V> Default for JobTable<V> {
    fn default() -> Self {
        JobTable { slots: Vec::new(), free: Vec::new(), index: HashTable::new() }
    }
}

impl<V> JobTable<V> {
    /// The slot of `id`, if present.
    fn slot_of(&self, id: &JobId) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(hash(id), |&i| matches!(&slots[i as usize], Some((k, _)) if k == id)).copied()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `id` has a record.
    pub fn contains_key(&self, id: &JobId) -> bool {
        self.slot_of(id).is_some()
    }

    /// The record of `id`.
    pub fn get(&self, id: &JobId) -> Option<&V> {
        let i = self.slot_of(id)?;
        self.slots[i as usize].as_ref().map(|(_, v)| v)
    }

    /// The record of `id`, mutable.
    pub fn get_mut(&mut self, id: &JobId) -> Option<&mut V> {
        let i = self.slot_of(id)?;
        self.slots[i as usize].as_mut().map(|(_, v)| v)
    }

    /// Inserts or replaces the record of `id`; returns the old one.
    pub fn insert(&mut self, id: JobId, value: V) -> Option<V> {
        if let Some(i) = self.slot_of(&id) {
            return self.slots[i as usize].replace((id, value)).map(|(_, v)| v);
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some((id, value));
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 job records");
                self.slots.push(Some((id, value)));
                i
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash(&id), i, |&j| match &slots[j as usize] {
            Some((k, _)) => hash(k),
            None => 0,
        });
        None
    }

    /// Removes and returns the record of `id`.
    pub fn remove(&mut self, id: &JobId) -> Option<V> {
        let slots = &self.slots;
        let entry = self.index.find_entry(hash(id), |&i| matches!(&slots[i as usize], Some((k, _)) if k == id)).ok()?;
        let (i, _) = entry.remove();
        let (_, v) = self.slots[i as usize].take()?;
        if i as usize + 1 == self.slots.len() {
            self.slots.pop();
        } else {
            self.free.push(i);
        }
        if self.index.is_empty() {
            // Give the memory of a drained backlog back.
            self.slots = Vec::new();
            self.free = Vec::new();
            self.index = HashTable::new();
        }
        Some(v)
    }

    /// Every record, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&JobId, &V)> {
        self.slots.iter().filter_map(|s| s.as_ref().map(|(k, v)| (k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_reuse() {
        let mut t = JobTable::default();
        let ids: Vec<JobId> =
            (0..1000u128).map(|i| JobId((i << 64) | (i * 0x9e37_79b9_7f4a_7c15) as u64 as u128)).collect();
        for (n, id) in ids.iter().enumerate() {
            assert!(t.insert(*id, n).is_none());
        }
        assert_eq!(t.len(), 1000);
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(t.get(id), Some(&n));
        }
        for id in ids.iter().step_by(2) {
            assert!(t.remove(id).is_some());
            assert!(!t.contains_key(id));
            assert!(t.remove(id).is_none());
        }
        assert_eq!(t.len(), 500);
        let fresh = JobId(u128::MAX);
        t.insert(fresh, 7);
        *t.get_mut(&fresh).unwrap() += 1;
        assert_eq!(t.get(&fresh), Some(&8));
        assert_eq!(t.insert(fresh, 9), Some(8));
        assert_eq!(t.iter().count(), 501);
        for id in ids.iter().skip(1).step_by(2) {
            assert!(t.remove(id).is_some());
        }
        t.remove(&fresh);
        assert!(t.is_empty());
        assert_eq!(t.get(&ids[1]), None);
    }
}
