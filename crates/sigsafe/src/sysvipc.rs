//! System V IPC by raw system call: the status of a segment, semaphore set or message queue
//! (`IPC_STAT`), semaphore values, a non-destructive copy of a queued message (`MSG_COPY`), and
//! what a restart needs to make them again. linux-raw-sys has the call numbers but not the
//! kernel's `*id64_ds` records, so their x86-64 layouts are read here, and only here.
//!
//! # Restrictions
//! Used in libckpt's signal handler and in myrestart before its point of no return: no
//! allocation, no libc, raw system calls only.

use crate::sys::syscall6;
use linux_raw_sys::general as k;
use rustix::io::Errno;

pub const IPC_CREAT: u32 = 0o1000;
pub const IPC_EXCL: u32 = 0o2000;
pub const IPC_NOWAIT: u32 = 0o4000;
const IPC_SET: usize = 1;
const IPC_STAT: usize = 2;
const GETALL: usize = 13;
const SETALL: usize = 17;
const MSG_COPY: usize = 0o40000;
pub const SHM_RDONLY: u32 = 0o10000;
pub const SHM_REMAP: u32 = 0o40000;
pub const SHM_EXEC: u32 = 0o100000;
/// The kernel's `ipc64_perm`, then the fields of each record used here (x86-64 offsets).
const PERM_KEY: usize = 0;
const PERM_UID: usize = 4;
const PERM_GID: usize = 8;
const PERM_MODE: usize = 20;
const SHM_SEGSZ: usize = 48;
const SHM_NATTCH: usize = 88;
const SEM_NSEMS: usize = 80;
const MSG_QNUM: usize = 80;
const MSG_QBYTES: usize = 88;
/// Room for any of the records (`shmid64_ds` is the largest, 112 bytes).
const DS_LEN: usize = 128;

fn check(r: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&r) {
        Err(Errno::from_raw_os_error(-r as i32))
    } else {
        Ok(r as usize)
    }
}

fn u32_at(ds: &[u8; DS_LEN], at: usize) -> u32 {
    u32::from_ne_bytes([ds[at], ds[at + 1], ds[at + 2], ds[at + 3]])
}

fn u64_at(ds: &[u8; DS_LEN], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&ds[at..at + 8]);
    u64::from_ne_bytes(b)
}

/// What every kind of object has: key, owner and permission bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

fn perm(ds: &[u8; DS_LEN]) -> Perm {
    Perm { key: u32_at(ds, PERM_KEY) as i32, uid: u32_at(ds, PERM_UID), gid: u32_at(ds, PERM_GID), mode: u32_at(ds, PERM_MODE) & 0o777 }
}

/// `*ctl(id, cmd, ds)` for the object kind whose control call is `nr`.
fn ctl(nr: u32, id: i32, cmd: usize, ds: &mut [u8; DS_LEN]) -> Result<usize, Errno> {
    // SAFETY: `ds` has room for the kernel's largest record of the three kinds (`shmid64_ds`,
    // 112 bytes); semctl takes its fourth argument by value, the record's address here.
    check(unsafe { syscall6(nr as usize, id as u32 as usize, cmd, ds.as_mut_ptr() as usize, ds.as_mut_ptr() as usize, 0, 0) })
}

/// A segment: its key, owner and mode, its size, and how many attach it.
pub fn shm_stat(id: i32) -> Result<(Perm, u64, u64), Errno> {
    let mut ds = [0u8; DS_LEN];
    ctl(k::__NR_shmctl, id, IPC_STAT, &mut ds)?;
    Ok((perm(&ds), u64_at(&ds, SHM_SEGSZ), u64_at(&ds, SHM_NATTCH)))
}

/// A semaphore set: key, owner and mode, and its number of semaphores.
pub fn sem_stat(id: i32) -> Result<(Perm, usize), Errno> {
    let mut ds = [0u8; DS_LEN];
    // semctl(id, 0, IPC_STAT, ds): the semaphore number comes first.
    // SAFETY: as in `ctl`, with the semaphore number in the second argument.
    check(unsafe { syscall6(k::__NR_semctl as usize, id as u32 as usize, 0, IPC_STAT, ds.as_mut_ptr() as usize, 0, 0) })?;
    Ok((perm(&ds), u64_at(&ds, SEM_NSEMS) as usize))
}

/// A message queue: key, owner and mode, how many messages it holds, and its byte limit.
pub fn msg_stat(id: i32) -> Result<(Perm, usize, u64), Errno> {
    let mut ds = [0u8; DS_LEN];
    ctl(k::__NR_msgctl, id, IPC_STAT, &mut ds)?;
    Ok((perm(&ds), u64_at(&ds, MSG_QNUM) as usize, u64_at(&ds, MSG_QBYTES)))
}

/// Every value of semaphore set `id` of `nsems` semaphores into `out`, two bytes each (the
/// kernel's u16, little-endian on x86-64): the bytes written.
pub fn sem_getall(id: i32, nsems: usize, out: &mut [u8]) -> Result<usize, Errno> {
    let out = out.get_mut(..nsems * 2).ok_or(Errno::TOOBIG)?;
    // SAFETY: `out` has two bytes per semaphore of the set (sized from `sem_stat`), what GETALL
    // writes; the kernel copies them out byte-wise (no alignment needed).
    check(unsafe { syscall6(k::__NR_semctl as usize, id as u32 as usize, 0, GETALL, out.as_mut_ptr() as usize, 0, 0) })?;
    Ok(out.len())
}

/// Sets every value of semaphore set `id` from `values`, two bytes each as [`sem_getall`]
/// gives them (as many as the set has).
pub fn sem_setall(id: i32, values: &[u8]) -> Result<(), Errno> {
    // SAFETY: SETALL reads one u16 per semaphore of the set, byte-wise; `values` holds that
    // many (the caller's record says how many the set has, and made it so).
    check(unsafe { syscall6(k::__NR_semctl as usize, id as u32 as usize, 0, SETALL, values.as_ptr() as usize, 0, 0) }).map(drop)
}

/// A copy of the message at position `index` of queue `id`, left in the queue (`MSG_COPY`,
/// which needs `CONFIG_CHECKPOINT_RESTORE`): its type and length, its text in `buf[8..]`.
pub fn msg_copy(id: i32, index: usize, buf: &mut [u8]) -> Result<(i64, usize), Errno> {
    if buf.len() < 8 {
        return Err(Errno::INVAL);
    }
    let room = buf.len() - 8;
    // SAFETY: `buf` holds the type (8 bytes) and `room` bytes of text, the most msgrcv writes.
    let n = check(unsafe {
        syscall6(k::__NR_msgrcv as usize, id as u32 as usize, buf.as_mut_ptr() as usize, room, index, MSG_COPY | IPC_NOWAIT as usize, 0)
    })?;
    let mut t = [0u8; 8];
    t.copy_from_slice(&buf[..8]);
    Ok((i64::from_ne_bytes(t), n))
}

/// `shmget`, `semget`, `msgget` with `flags` (mode bits and `IPC_*`): the new object's ID.
pub fn shmget(key: i32, size: u64, flags: u32) -> Result<i32, Errno> {
    // SAFETY: integers only.
    check(unsafe { syscall6(k::__NR_shmget as usize, key as u32 as usize, size as usize, flags as usize, 0, 0, 0) }).map(|id| id as i32)
}

pub fn semget(key: i32, nsems: usize, flags: u32) -> Result<i32, Errno> {
    // SAFETY: integers only.
    check(unsafe { syscall6(k::__NR_semget as usize, key as u32 as usize, nsems, flags as usize, 0, 0, 0) }).map(|id| id as i32)
}

pub fn msgget(key: i32, flags: u32) -> Result<i32, Errno> {
    // SAFETY: integers only.
    check(unsafe { syscall6(k::__NR_msgget as usize, key as u32 as usize, flags as usize, 0, 0, 0, 0) }).map(|id| id as i32)
}

/// Queues `text` with type `mtype` (`buf` is room for the type and the text, which it holds then).
pub fn msgsnd(id: i32, mtype: i64, text: &[u8], buf: &mut [u8]) -> Result<(), Errno> {
    let Some(room) = buf.get_mut(..8 + text.len()) else { return Err(Errno::TOOBIG) };
    room[..8].copy_from_slice(&mtype.to_ne_bytes());
    room[8..].copy_from_slice(text);
    // SAFETY: `room` holds the type and `text.len()` bytes of text, what msgsnd reads.
    check(unsafe { syscall6(k::__NR_msgsnd as usize, id as u32 as usize, room.as_ptr() as usize, text.len(), IPC_NOWAIT as usize, 0, 0) }).map(drop)
}

/// Which kind of object an `ipc_set` is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Shm,
    Sem,
    Msg,
}

/// Gives object `id` its owner and mode (and a queue its byte limit, when `qbytes` is not 0):
/// `IPC_SET` after an `IPC_STAT`, so that the rest stays as it is.
pub fn ipc_set(kind: Kind, id: i32, p: Perm, qbytes: u64) -> Result<(), Errno> {
    let mut ds = [0u8; DS_LEN];
    let put = |ds: &mut [u8; DS_LEN]| {
        ds[PERM_UID..PERM_UID + 4].copy_from_slice(&p.uid.to_ne_bytes());
        ds[PERM_GID..PERM_GID + 4].copy_from_slice(&p.gid.to_ne_bytes());
        ds[PERM_MODE..PERM_MODE + 4].copy_from_slice(&(p.mode & 0o777).to_ne_bytes());
    };
    match kind {
        Kind::Shm => {
            ctl(k::__NR_shmctl, id, IPC_STAT, &mut ds)?;
            put(&mut ds);
            ctl(k::__NR_shmctl, id, IPC_SET, &mut ds).map(drop)
        }
        Kind::Msg => {
            ctl(k::__NR_msgctl, id, IPC_STAT, &mut ds)?;
            put(&mut ds);
            if qbytes != 0 {
                ds[MSG_QBYTES..MSG_QBYTES + 8].copy_from_slice(&qbytes.to_ne_bytes());
            }
            ctl(k::__NR_msgctl, id, IPC_SET, &mut ds).map(drop)
        }
        Kind::Sem => {
            // SAFETY: as in `sem_stat`, for IPC_STAT then IPC_SET.
            check(unsafe { syscall6(k::__NR_semctl as usize, id as u32 as usize, 0, IPC_STAT, ds.as_mut_ptr() as usize, 0, 0) })?;
            put(&mut ds);
            // SAFETY: as above.
            check(unsafe { syscall6(k::__NR_semctl as usize, id as u32 as usize, 0, IPC_SET, ds.as_mut_ptr() as usize, 0, 0) }).map(drop)
        }
    }
}

/// `shmat(id, addr, flags)`: where the segment is attached.
///
/// # Safety
/// With `SHM_REMAP` at a given address, the caller gives up whatever was mapped there.
pub unsafe fn shmat(id: i32, addr: usize, flags: u32) -> Result<usize, Errno> {
    // SAFETY: the caller vouches for the address range (see above); else the kernel picks a free one.
    check(unsafe { syscall6(k::__NR_shmat as usize, id as u32 as usize, addr, flags as usize, 0, 0, 0) })
}

/// `shmdt(addr)`.
///
/// # Safety
/// Nothing may use the attachment at `addr` afterwards.
pub unsafe fn shmdt(addr: usize) -> Result<(), Errno> {
    // SAFETY: the caller gives up the attachment.
    check(unsafe { syscall6(k::__NR_shmdt as usize, addr, 0, 0, 0, 0, 0) }).map(drop)
}

/// Sets the ID the next object of `kind` made in this IPC namespace gets
/// (`/proc/sys/kernel/{shm,sem,msg}_next_id`; writable with `CAP_CHECKPOINT_RESTORE` over the
/// namespace's user namespace).
pub fn set_next_id(kind: Kind, id: i32) -> Result<(), Errno> {
    let path = match kind {
        Kind::Shm => c"/proc/sys/kernel/shm_next_id",
        Kind::Sem => c"/proc/sys/kernel/sem_next_id",
        Kind::Msg => c"/proc/sys/kernel/msg_next_id",
    };
    let mut text = [0u8; 24];
    let mut w = ckpt_image::bytes::Writer::new(&mut text[..]);
    if id < 0 {
        w.bytes(b"-1");
    } else {
        w.decimal(id as u64);
    }
    let n = w.finish().ok_or(Errno::INVAL)?;
    let fd = rustix::fs::open(path, rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())?;
    if rustix::io::write(&fd, &text[..n])? != n {
        return Err(Errno::IO);
    }
    Ok(())
}
