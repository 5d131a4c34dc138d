//! Names for the errors a checkpoint or restart can meet, without libc's `strerror` (which may
//! allocate and is not async-signal-safe).

use rustix::io::Errno;

/// A short description of `e`, as `strerror` would give for the common cases.
pub fn describe(e: Errno) -> &'static str {
    match e {
        Errno::NOENT => "No such file or directory",
        Errno::ACCESS => "Permission denied",
        Errno::PERM => "Operation not permitted",
        Errno::NOSPC => "No space left on device",
        Errno::DQUOT => "Disk quota exceeded",
        Errno::ROFS => "Read-only file system",
        Errno::IO => "Input/output error",
        Errno::NOMEM => "Cannot allocate memory",
        Errno::INVAL => "Invalid argument",
        Errno::EXIST => "File exists",
        Errno::ISDIR => "Is a directory",
        Errno::NOTDIR => "Not a directory",
        Errno::FAULT => "Bad address",
        Errno::FBIG => "File too large",
        Errno::NAMETOOLONG => "File name too long",
        Errno::MFILE => "Too many open files",
        Errno::BADF => "Bad file descriptor",
        Errno::BUSY => "Device or resource busy",
        Errno::AGAIN => "Resource temporarily unavailable",
        Errno::INTR => "Interrupted system call",
        Errno::NOSYS => "Function not implemented",
        Errno::LOOP => "Too many levels of symbolic links",
        Errno::ADDRINUSE => "Address already in use",
        Errno::ADDRNOTAVAIL => "Cannot assign requested address",
        Errno::CONNREFUSED => "Connection refused",
        Errno::AFNOSUPPORT => "Address family not supported by protocol",
        Errno::OPNOTSUPP => "Operation not supported",
        Errno::PIPE => "Broken pipe",
        Errno::NXIO => "No such device or address",
        Errno::SRCH => "No such process",
        Errno::NOTCONN => "Transport endpoint is not connected",
        _ => "system error",
    }
}
