//! Standard output of the commands. The commands write through here, not `println!`: a reader
//! that has gone (`shadowgate portal constraints CA | head -1`) is not an error. Writing stops
//! at the first failed write and the command ends quietly with the status of its work, as
//! command-line tools do; any other write error (a full disk under a redirection) is reported
//! and fails the command.
//!
//! Rust ignores SIGPIPE, so writing to a closed pipe returns `BrokenPipe` (on which `println!`
//! panics). The signal is left ignored process-wide on purpose: `shadowgate run` writes to
//! sockets, where a peer closing must never kill the daemon.

use std::io::{self, Write};
use std::process::ExitCode;

/// Write to standard output through `f` (buffered), then flush. `Ok` also when the reader has
/// closed the pipe: `f` stops at its first failed write (pass its errors on with `?`) and
/// nothing more is written.
pub(crate) fn print_with(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), String> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    quiet_on_closed_pipe(f(&mut out).and_then(|()| out.flush()))
}

/// Write one line (`args` and a newline) to standard output, as [`print_with`].
pub(crate) fn line(args: std::fmt::Arguments<'_>) -> Result<(), String> {
    print_with(|w| {
        w.write_fmt(args)?;
        w.write_all(b"\n")
    })
}

/// A write result with a closed pipe counted as success; other errors said for people.
pub(crate) fn quiet_on_closed_pipe(r: io::Result<()>) -> Result<(), String> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to standard output: {e}"))
        }
        _ => Ok(()),
    }
}

/// `ok` when the output was written (or its reader had gone), else the error on stderr and
/// failure.
pub(crate) fn exit(r: Result<(), String>, ok: ExitCode) -> ExitCode {
    match r {
        Ok(()) => ok,
        Err(e) => {
            eprintln!("shadowgate: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_pipe_is_quiet_other_errors_are_said() {
        assert_eq!(
            quiet_on_closed_pipe(Err(io::Error::from(io::ErrorKind::BrokenPipe))),
            Ok(())
        );
        let e = quiet_on_closed_pipe(Err(io::Error::from_raw_os_error(libc::ENOSPC))).unwrap_err();
        assert!(e.contains("standard output") && e.contains("space"), "{e}");
        assert_eq!(quiet_on_closed_pipe(Ok(())), Ok(()));
    }
}
