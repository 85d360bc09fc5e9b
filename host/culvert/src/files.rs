//! Reading files that may not be what their names promise: a package path
//! given on the command line, an artifact in the compiled-code cache.
//!
//! [`open_regular`] refuses anything that is not a regular file (a FIFO, a
//! directory, a device, a socket; also a symbolic link when asked not to
//! follow links) and never blocks doing so: the type is checked before
//! opening, the file is opened non-blocking (so a FIFO swapped in after the
//! check cannot hang the open), and the open handle is checked again, which
//! also catches a file replaced between the two checks. [`read_bounded`]
//! then reads at most a limit plus one byte, whatever the file claims its
//! size is, so a file that grows after the check (or `/dev/zero` behind a
//! link) cannot exhaust memory.

use std::fs::{File, FileType, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Linux's `O_NONBLOCK` (the same on x86-64 and AArch64). The standard
/// library has no constant for it and this crate takes no `libc`
/// dependency. On other targets it is 0 and only the type checks before and
/// after opening apply: a FIFO swapped in between them could then block the
/// open.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
const O_NONBLOCK: i32 = 0o4000;
/// Linux's `O_NOFOLLOW` on x86-64.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
const O_NOFOLLOW: i32 = 0o400000;
/// Linux's `O_NOFOLLOW` on AArch64.
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
const O_NOFOLLOW: i32 = 0o100000;
/// No flags elsewhere (see above); without `O_NOFOLLOW`, the device and
/// inode comparison in [`open_regular`] still refuses a link swapped in
/// after the first check.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
const O_NONBLOCK: i32 = 0;
/// See [`O_NONBLOCK`].
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
const O_NOFOLLOW: i32 = 0;

/// Whether [`open_regular`] follows a symbolic link at the path itself
/// (links among the parent directories are always followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Open what the link points to, as `culvert package add` does.
    Follow,
    /// Refuse a link, as the cache does: it only reads files it wrote.
    Refuse,
}

/// Why [`open_regular`] refused a path.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path could not be examined or opened.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It exists but is not a regular file.
    #[error("it is {kind}, not a regular file")]
    NotRegular {
        /// What it is, with its article: `a FIFO (named pipe)`.
        kind: &'static str,
    },
    /// It changed between the check and the open.
    #[error("it was replaced while being opened")]
    Replaced,
}

/// What a file type is, for messages: `a directory`, `a FIFO (named
/// pipe)`, `a character device`, ...
pub fn kind(file_type: &FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Open `path` for reading if, and only if, it is a regular file; return
/// the handle and its metadata, taken from the handle itself.
///
/// # Errors
/// [`OpenError::NotRegular`] for anything else (with [`Links::Refuse`], a
/// symbolic link too), [`OpenError::Replaced`] when the file opened is not
/// the one checked, and [`OpenError::Io`] when the path cannot be examined
/// or opened.
pub fn open_regular(path: &Path, links: Links) -> Result<(File, Metadata), OpenError> {
    let before = match links {
        Links::Follow => std::fs::metadata(path)?,
        Links::Refuse => std::fs::symlink_metadata(path)?,
    };
    if !before.file_type().is_file() {
        return Err(OpenError::NotRegular {
            kind: kind(&before.file_type()),
        });
    }
    let flags = O_NONBLOCK
        | match links {
            Links::Follow => 0,
            Links::Refuse => O_NOFOLLOW,
        };
    let file = File::options().read(true).custom_flags(flags).open(path)?;
    let after = file.metadata()?;
    if !after.file_type().is_file() {
        return Err(OpenError::NotRegular {
            kind: kind(&after.file_type()),
        });
    }
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(OpenError::Replaced);
    }
    Ok((file, after))
}

/// Append what `reader` holds to `out`, up to its end or to `limit` bytes
/// and one more, whichever comes first; return how many bytes were read.
/// More than `limit` means the file is larger than allowed; the rest of it
/// was not read.
///
/// # Errors
/// When a read fails.
pub fn read_bounded(reader: impl Read, limit: u64, out: &mut Vec<u8>) -> std::io::Result<u64> {
    let read = reader.take(limit.saturating_add(1)).read_to_end(out)?;
    Ok(read as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        let (f, meta) = open_regular(&file, Links::Refuse).unwrap();
        assert_eq!(meta.len(), 5);
        let mut out = b">".to_vec();
        assert_eq!(read_bounded(f, 100, &mut out).unwrap(), 5);
        assert_eq!(out, b">12345");
        let (f, _) = open_regular(&file, Links::Follow).unwrap();
        let mut out = Vec::new();
        assert_eq!(read_bounded(f, 3, &mut out).unwrap(), 4, "limit + 1 bytes");
        // A device that never ends is cut at the limit too.
        let zero = File::open("/dev/zero").unwrap();
        assert_eq!(read_bounded(zero, 1000, &mut Vec::new()).unwrap(), 1001);

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_regular(&link, Links::Follow).is_ok());
        let e = open_regular(&link, Links::Refuse).unwrap_err();
        assert!(e.to_string().contains("a symbolic link"), "{e}");

        let e = open_regular(dir.path(), Links::Follow).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let e = open_regular(Path::new("/dev/zero"), Links::Follow).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        assert!(matches!(
            open_regular(&dir.path().join("missing"), Links::Follow),
            Err(OpenError::Io(_))
        ));
    }
}
