//! Where a shadow server keeps its copies: append-only segment files
//! `<queueDirectory>/shadow/<n>.seg`. Not the queue's redb store, because a copy is
//! written once, read only if its primary is lost, and dropped soon after: a log pays
//! one write and one fdatasync per batch of copies, where the B-tree cost as much as
//! the primary's own queue commit, and that cost set the shadowed relay rate.
//!
//! A record is its length (u32, big endian) and the CRC-32 (crc32fast) of what follows,
//! then either a copy — kind 1, id (u64), the primary's incarnation (u64), the primary's
//! name (u16 length, bytes), the copy as it came over the channel (`channel::frame`) —
//! or a drop — kind 2, ids (u64 each). A record cut short or failing its CRC ends its
//! segment: a write a crash cut off, never acknowledged (the last segment is truncated
//! there so appends continue cleanly). Segments rotate past [`SEGMENT_BYTES`] and are
//! deleted oldest first once no copy in them is live: a drop, recorded in the segment
//! written at the time, never goes before the copy it drops.
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A new segment is started past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
const COPY: u8 = 1;
const DROP: u8 = 2;
const HEAD: usize = 8;

/// A copy found when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub id: u64,
    pub primary: String,
    pub incarnation: u64,
    /// The copy as the channel carried it.
    pub frame: Vec<u8>,
}

struct Place {
    segment: u64,
    offset: u64,
    len: u32,
}

struct LogIndex {
    active: File,
    active_no: u64,
    active_len: u64,
    /// Live copies per segment.
    live: BTreeMap<u64, usize>,
    places: HashMap<u64, Place>,
    next_id: u64,
}

pub struct CopyLog {
    dir: PathBuf,
    state: Mutex<LogIndex>,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:010}.seg"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// One record: head, then `body`.
fn record(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn copy_body(id: u64, primary: &str, incarnation: u64, frame: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(19 + primary.len() + frame.len());
    body.push(COPY);
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&incarnation.to_be_bytes());
    body.extend_from_slice(&(primary.len() as u16).to_be_bytes());
    body.extend_from_slice(primary.as_bytes());
    body.extend_from_slice(frame);
    body
}

/// What a record's body says.
enum Parsed<'a> {
    Copy { id: u64, incarnation: u64, primary: &'a str, frame: &'a [u8] },
    Drop(Vec<u64>),
}

fn parse(body: &[u8]) -> Option<Parsed<'_>> {
    let (&kind, rest) = body.split_first()?;
    match kind {
        COPY => {
            let (id, rest) = rest.split_first_chunk::<8>()?;
            let (incarnation, rest) = rest.split_first_chunk::<8>()?;
            let (len, rest) = rest.split_first_chunk::<2>()?;
            let len = u16::from_be_bytes(*len) as usize;
            let primary = std::str::from_utf8(rest.get(..len)?).ok()?;
            Some(Parsed::Copy {
                id: u64::from_be_bytes(*id),
                incarnation: u64::from_be_bytes(*incarnation),
                primary,
                frame: &rest[len..],
            })
        }
        DROP => Some(Parsed::Drop(
            rest.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
        )),
        _ => None,
    }
}

/// A record's offset in its segment, and its body.
type Record = (u64, Vec<u8>);

/// Every whole, intact record of a segment; and where they end.
fn read_segment(path: &Path) -> io::Result<(Vec<Record>, u64)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while let Some(head) = bytes.get(at..at + HEAD) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let Some(body) = bytes.get(at + HEAD..at + HEAD + len) else { break };
        if crc32fast::hash(body) != crc {
            break;
        }
        records.push((at as u64, body.to_vec()));
        at += HEAD + len;
    }
    Ok((records, at as u64))
}

impl CopyLog {
    /// Opens (or creates) the log in `dir` and returns every live copy in it.
    pub fn open(dir: &Path) -> io::Result<(CopyLog, Vec<Logged>)> {
        std::fs::create_dir_all(dir)?;
        let mut numbers: Vec<u64> = std::fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut copies: BTreeMap<u64, (u64, Logged, Place)> = BTreeMap::new();
        let mut next_id = 1;
        let mut end = 0;
        for &n in &numbers {
            let path = segment_path(dir, n);
            let (records, valid) = read_segment(&path)?;
            end = valid;
            for (offset, body) in records {
                match parse(&body) {
                    Some(Parsed::Copy { id, incarnation, primary, frame }) => {
                        next_id = next_id.max(id + 1);
                        let logged = Logged { id, primary: primary.to_string(), incarnation, frame: frame.to_vec() };
                        let place = Place { segment: n, offset, len: (HEAD + body.len()) as u32 };
                        copies.insert(id, (n, logged, place));
                    }
                    Some(Parsed::Drop(ids)) => {
                        for id in ids {
                            copies.remove(&id);
                        }
                    }
                    None => {
                        tracing::warn!(segment = %path.display(), offset, "a shadow log record of no known kind was skipped")
                    }
                }
            }
        }
        let active_no = numbers.last().copied().unwrap_or(1);
        let path = segment_path(dir, active_no);
        let mut active = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(&path)?;
        // Whatever a crash left after the last intact record goes.
        if active.metadata()?.len() > end {
            tracing::warn!(segment = %path.display(), at = end, "a shadow log record cut short by a crash was removed");
            active.set_len(end)?;
            active.sync_all()?;
        }
        // Appends go after the last intact record.
        active.seek(SeekFrom::Start(end))?;
        sync_dir(dir)?;
        let mut live: BTreeMap<u64, usize> = numbers.iter().map(|n| (*n, 0)).collect();
        live.entry(active_no).or_default();
        let mut places = HashMap::new();
        let mut out = Vec::new();
        for (id, (segment, logged, place)) in copies {
            *live.entry(segment).or_default() += 1;
            places.insert(id, place);
            out.push(logged);
        }
        let log = CopyLog {
            dir: dir.to_path_buf(),
            state: Mutex::new(LogIndex { active, active_no, active_len: end, live, places, next_id }),
        };
        {
            let mut state = log.lock();
            log.delete_empty_segments(&mut state)?;
        }
        Ok((log, out))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogIndex> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends copies of `primary`'s messages and returns once they are on disk
    /// (one write, one fdatasync), with the id each got. Blocking.
    pub fn append(&self, primary: &str, incarnation: u64, frames: &[&[u8]]) -> io::Result<Vec<u64>> {
        let mut state = self.lock();
        if state.active_len >= SEGMENT_BYTES {
            self.rotate(&mut state)?;
        }
        let mut bytes = Vec::new();
        let mut ids = Vec::with_capacity(frames.len());
        let mut placed = Vec::with_capacity(frames.len());
        for frame in frames {
            let id = state.next_id;
            state.next_id += 1;
            let rec = record(&copy_body(id, primary, incarnation, frame));
            placed.push((id, state.active_len + bytes.len() as u64, rec.len() as u32));
            bytes.extend_from_slice(&rec);
            ids.push(id);
        }
        let written = state.active.write_all(&bytes).and_then(|()| state.active.sync_data());
        if let Err(e) = written {
            // Nothing of this batch counts; cut it off so the segment stays whole.
            let end = state.active_len;
            let _ = state.active.set_len(end);
            let _ = state.active.seek(SeekFrom::Start(end));
            return Err(e);
        }
        let segment = state.active_no;
        state.active_len += bytes.len() as u64;
        *state.live.entry(segment).or_default() += ids.len();
        for (id, offset, len) in placed {
            state.places.insert(id, Place { segment, offset, len });
        }
        Ok(ids)
    }

    /// The copy (as the channel carried it) of `id`, if it is live. Blocking.
    pub fn read(&self, id: u64) -> io::Result<Option<Vec<u8>>> {
        let (path, offset, len) = {
            let state = self.lock();
            let Some(p) = state.places.get(&id) else { return Ok(None) };
            (segment_path(&self.dir, p.segment), p.offset, p.len)
        };
        let mut buf = vec![0u8; len as usize];
        File::open(&path)?.read_exact_at(&mut buf, offset)?;
        match parse(&buf[HEAD..]) {
            Some(Parsed::Copy { id: found, frame, .. }) if found == id => Ok(Some(frame.to_vec())),
            _ => Err(io::Error::other(format!("the shadow log record of copy {id} is not where it was written"))),
        }
    }

    /// Drops copies. `sync`: on disk before this returns (a takeover must not
    /// come back after a restart); else with the next write (a discard found
    /// again after a crash is only found finished again). Blocking.
    pub fn drop_copies(&self, ids: &[u64], sync: bool) -> io::Result<()> {
        let mut state = self.lock();
        let mut dropped = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(place) = state.places.remove(id) {
                if let Some(n) = state.live.get_mut(&place.segment) {
                    *n = n.saturating_sub(1);
                }
                dropped.push(*id);
            }
        }
        if dropped.is_empty() {
            return Ok(());
        }
        let mut body = Vec::with_capacity(1 + 8 * dropped.len());
        body.push(DROP);
        for id in &dropped {
            body.extend_from_slice(&id.to_be_bytes());
        }
        let rec = record(&body);
        let written = state.active.write_all(&rec).and_then(|()| if sync { state.active.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Cut off what part of it got written: later records must land where
            // they are indexed, and a reopen must not end the segment here.
            let end = state.active_len;
            let _ = state.active.set_len(end);
            let _ = state.active.seek(SeekFrom::Start(end));
            return Err(e);
        }
        state.active_len += rec.len() as u64;
        self.delete_empty_segments(&mut state)
    }

    fn rotate(&self, state: &mut LogIndex) -> io::Result<()> {
        state.active.sync_data()?;
        let n = state.active_no + 1;
        state.active =
            OpenOptions::new().create(true).read(true).write(true).truncate(true).open(segment_path(&self.dir, n))?;
        sync_dir(&self.dir)?;
        state.active_no = n;
        state.active_len = 0;
        state.live.insert(n, 0);
        self.delete_empty_segments(state)
    }

    /// Deletes segments with no live copy, oldest first, never the active one:
    /// a later segment may hold the drops of an earlier one's copies.
    fn delete_empty_segments(&self, state: &mut LogIndex) -> io::Result<()> {
        let mut deleted = false;
        while let Some((&n, &live)) = state.live.first_key_value() {
            if live > 0 || n == state.active_no {
                break;
            }
            match std::fs::remove_file(segment_path(&self.dir, n)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            state.live.remove(&n);
            deleted = true;
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_survive_a_reopen_drops_and_torn_tails_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (log, found) = CopyLog::open(dir.path()).unwrap();
        assert!(found.is_empty());
        let ids = log.append("mail-0", 7, &[b"one", b"two", b"three"]).unwrap();
        assert_eq!(ids, [1, 2, 3]);
        log.drop_copies(&[2], false).unwrap();
        assert_eq!(log.read(3).unwrap().as_deref(), Some(&b"three"[..]));
        assert_eq!(log.read(2).unwrap(), None);
        drop(log);

        // A crash in the middle of the next append: half a record at the end.
        let segment = segment_path(dir.path(), 1);
        let whole = std::fs::metadata(&segment).unwrap().len();
        let torn = record(&copy_body(4, "mail-0", 7, b"four"));
        let mut f = OpenOptions::new().append(true).open(&segment).unwrap();
        f.write_all(&torn[..torn.len() - 2]).unwrap();
        drop(f);

        let (log, found) = CopyLog::open(dir.path()).unwrap();
        let ids: Vec<u64> = found.iter().map(|c| c.id).collect();
        assert_eq!(ids, [1, 3], "the dropped copy and the torn one are gone");
        assert_eq!(
            (found[0].primary.as_str(), found[0].incarnation, found[0].frame.as_slice()),
            ("mail-0", 7, &b"one"[..])
        );
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), whole, "the torn tail was cut off");
        assert_eq!(log.append("mail-1", 9, &[b"five"]).unwrap(), [4], "ids go on after the highest seen");
        drop(log);
        let (_, found) = CopyLog::open(dir.path()).unwrap();
        let all: Vec<(u64, &[u8])> = found.iter().map(|c| (c.id, c.frame.as_slice())).collect();
        assert_eq!(all, [(1, &b"one"[..]), (3, &b"three"[..]), (4, &b"five"[..])], "appended after what was there");
    }

    #[test]
    fn a_record_whose_checksum_fails_ends_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = CopyLog::open(dir.path()).unwrap();
        log.append("mail-0", 1, &[b"kept", b"scribbled", b"after"]).unwrap();
        drop(log);
        let segment = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&segment).unwrap();
        let second = record(&copy_body(1, "mail-0", 1, b"kept")).len();
        bytes[second + HEAD + 3] ^= 0xff;
        std::fs::write(&segment, bytes).unwrap();
        let (_, found) = CopyLog::open(dir.path()).unwrap();
        assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn segments_rotate_and_empty_ones_go_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = CopyLog::open(dir.path()).unwrap();
        let big = vec![0u8; (SEGMENT_BYTES / 2) as usize];
        let a = log.append("p", 1, &[big.as_slice(), big.as_slice()]).unwrap()[0];
        let b = log.append("p", 1, &[b"in the second segment"]).unwrap()[0];
        let count = || std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(count(), 2);
        log.drop_copies(&[b], true).unwrap();
        assert_eq!(count(), 2, "the active segment stays, and the first still has live copies");
        log.drop_copies(&[a, a + 1], true).unwrap();
        assert_eq!(count(), 1, "the first segment went once nothing in it was live");
        drop(log);
        let (log, found) = CopyLog::open(dir.path()).unwrap();
        assert!(found.is_empty());
        assert_eq!(log.read(b).unwrap(), None);
    }
}
