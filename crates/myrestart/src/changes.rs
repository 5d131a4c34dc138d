//! The acts the plan noted (`acts.rs`), made: once every check of every part has passed, each
//! by the module that knows its kind (a log by `files`, a socket by `sockets`).
//!
//! # Restrictions
//! Runs before the point of no return in myrestart: no allocation, raw system calls only.

use crate::acts::What;
use crate::plan::Plan;
use crate::refusal::Refusal;
use core::ffi::CStr;

/// Makes this process's changes, in the order the plan noted them: first (`replacing` false)
/// all that can be taken back, then (in a tree, once every process has made those: a barrier)
/// the dead socket files replaced and the FIFOs' bytes put back.
/// What else is made can be taken back, a removed socket file cannot (and a bind just after
/// the removal at the same place all but never fails). On a failure, what was made is taken
/// back, and the refusal returned.
pub fn run(image_path: &CStr, p: &mut Plan, replacing: bool) -> Result<(), Refusal> {
    let Some(image) = p.image else { return Ok(()) };
    for i in 0..p.acts.noted() {
        let a = p.acts.list[i];
        if a.member != p.member || a.what.for_good() != replacing {
            continue;
        }
        let made = match a.what {
            What::NewLog | What::NameLog => crate::files::make_log(image_path, &image, &a).map(Some),
            What::Bind { stale } => crate::sockets::bind_planned(image_path, &image, &a, stale).map(Some),
            What::FillFifo => crate::files::fill_fifo(image_path, &image, p.image_fd, &a).map(|()| None),
            What::NameShm | What::ResetShm { .. } => shm(image_path, &image, &a),
        };
        match made {
            Ok(made) => p.acts.list[i].made = made,
            Err(refusal) => {
                p.acts.undo(p.image);
                return Err(refusal);
            }
        }
    }
    Ok(())
}

/// Once every process of a tree has made its changes (the last barrier before the points of
/// no return): unix datagram sockets connected again, to addresses that any process of the
/// tree may have just bound. A connection that fails is said, and the socket comes back
/// unconnected.
pub fn connect(p: &Plan) {
    if let Some(image) = p.image {
        crate::sockets::connect_planned(&image, p);
    }
}

/// The act on a POSIX shared memory object (`shmobj`): its path given, or its contents emptied.
fn shm(image_path: &CStr, image: &ckpt_image::Image, a: &crate::acts::Act) -> Result<Option<(u64, u64)>, Refusal> {
    let mut buf = [0u8; 4096];
    let Some(path) = crate::acts::path_of(image, a, &mut buf) else {
        return Err(crate::refusal::refuse(image_path, format_args!("region {}: the shared memory object to make again has no path", a.target)));
    };
    match a.what {
        What::ResetShm { size } => crate::shmobj::reset(image_path, path, a, size).map(|()| None),
        _ => crate::shmobj::name(image_path, path, a).map(Some),
    }
}
