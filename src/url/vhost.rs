//! Virtual hosts of the embedded brokers: each vhost other than `/` is a broker of its own
//! (a memory broker with a derived name, a SQLite file next to the main one), so that an
//! exchange `x` in `/` and one in `/prod` are two. `carrot serve` maps a client's
//! `connection.open` the same way, and so does a URL that names a vhost:
//! `memory://NAME/VHOST` (percent-encoded, as in amqp://) and `sqlite://PATH?vhost=VHOST`.

use std::path::{Path, PathBuf};

/// The name of the memory broker of `vhost` in the broker called `name`.
pub fn memory_name(name: &str, vhost: &str) -> String {
    if vhost == "/" {
        name.to_string()
    } else {
        format!("{name}~vhost~{}", hex(vhost))
    }
}

/// The file of `vhost` next to the broker file `path` (the file itself for `/`). Its name
/// is the vhost's bytes in hexadecimal, so no vhost name can reach another folder.
pub fn sqlite_path(path: &Path, vhost: &str) -> PathBuf {
    if vhost == "/" {
        path.to_path_buf()
    } else {
        let mut file = path.as_os_str().to_owned();
        file.push(format!(".vhost-{}", hex(vhost)));
        PathBuf::from(file)
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_vhost_is_the_broker_itself_and_others_cannot_escape_its_folder() {
        assert_eq!(memory_name("b", "/"), "b");
        assert_eq!(memory_name("b", "prod"), "b~vhost~70726f64");
        assert_eq!(
            sqlite_path(Path::new("/d/b.db"), "/"),
            PathBuf::from("/d/b.db")
        );
        assert_eq!(
            sqlite_path(Path::new("/d/b.db"), "../../etc/x"),
            PathBuf::from("/d/b.db.vhost-2e2e2f2e2e2f6574632f78")
        );
    }
}
