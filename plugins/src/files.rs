//! Reading the files a config names (secrets, keys, CA bundles, certificates) with a bound
//! on their size: a path to `/dev/zero` or to some huge file gets an error, instead of
//! `ficus check` or a reload reading forever (found by the `config_compile` fuzz target).

use std::io::Read;
use std::path::Path;

/// The largest file a config may name for a secret, a key or certificates: far above any
/// real one (a long certificate chain is a few tens of KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The file's bytes, or an error when it cannot be read or is larger than
/// [`MAX_FILE_BYTES`] (read no further than that).
pub fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "larger than 1 MiB, which no secret, key or certificate file is",
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_after_the_bound() {
        let err = read_bounded(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let dir = std::env::temp_dir().join(format!("ficus-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small");
        std::fs::write(&small, b"secret\n").unwrap();
        assert_eq!(read_bounded(&small).unwrap(), b"secret\n");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(read_bounded(&big).is_err());
        std::fs::write(&big, vec![b'a'; MAX_FILE_BYTES as usize]).unwrap();
        assert_eq!(read_bounded(&big).unwrap().len(), MAX_FILE_BYTES as usize);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
