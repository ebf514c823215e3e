//! The registry in a sqlite:// broker file, in the `access_*` tables of its layout
//! (version 3): written through on every change, read at start, so that vhosts, users and
//! permissions survive restarts. Tags are JSON arrays.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use super::{Permission, Registry, User, Vhost};
use crate::error::{Error, Result};

#[derive(Debug)]
pub(super) struct Store {
    db: parking_lot::Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// The registry of a broker file the sqlite backend has opened (and so migrated).
    pub(super) fn open(path: &Path) -> Result<Store> {
        let db = Connection::open(path).map_err(|e| fail(path, e))?;
        db.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| fail(path, e))?;
        Ok(Store {
            db: parking_lot::Mutex::new(db),
            path: path.into(),
        })
    }

    /// Reads the registry; `false` if the file has none yet (no vhost).
    pub(super) fn load(&self, registry: &mut Registry) -> Result<bool> {
        let db = self.db.lock();
        let fail = |e| fail(&self.path, e);
        let mut vhosts = db
            .prepare("SELECT name, description, tags FROM access_vhosts")
            .map_err(fail)?;
        for row in vhosts
            .query_map([], |r| {
                Ok(Vhost {
                    name: r.get(0)?,
                    description: r.get(1)?,
                    tags: tags(r.get(2)?),
                })
            })
            .map_err(fail)?
        {
            let vhost = row.map_err(fail)?;
            registry.vhosts.insert(vhost.name.clone(), vhost);
        }
        let mut users = db
            .prepare("SELECT name, password_hash, hashing_algorithm, tags FROM access_users")
            .map_err(fail)?;
        for row in users
            .query_map([], |r| {
                Ok(User {
                    name: r.get(0)?,
                    password_hash: r.get(1)?,
                    hashing_algorithm: r.get(2)?,
                    tags: tags(r.get(3)?),
                })
            })
            .map_err(fail)?
        {
            let user = row.map_err(fail)?;
            registry.users.insert(user.name.clone(), user);
        }
        let mut permissions = db
            .prepare("SELECT user, vhost, configure, write, read FROM access_permissions")
            .map_err(fail)?;
        for row in permissions
            .query_map([], |r| {
                Ok(Permission {
                    user: r.get(0)?,
                    vhost: r.get(1)?,
                    configure: r.get(2)?,
                    write: r.get(3)?,
                    read: r.get(4)?,
                })
            })
            .map_err(fail)?
        {
            let p = row.map_err(fail)?;
            registry
                .permissions
                .insert((p.user.clone(), p.vhost.clone()), p);
        }
        Ok(!registry.vhosts.is_empty())
    }

    /// Replaces the stored registry with `registry`, in one transaction.
    pub(super) fn save(&self, registry: &Registry) -> Result<()> {
        let mut db = self.db.lock();
        let fail = |e| fail(&self.path, e);
        let tx = db.transaction().map_err(fail)?;
        tx.execute_batch(
            "DELETE FROM access_vhosts; DELETE FROM access_users; DELETE FROM access_permissions;",
        )
        .map_err(fail)?;
        for v in registry.vhosts.values() {
            tx.execute(
                "INSERT INTO access_vhosts VALUES (?1, ?2, ?3)",
                params![v.name, v.description, json(&v.tags)],
            )
            .map_err(fail)?;
        }
        for u in registry.users.values() {
            tx.execute(
                "INSERT INTO access_users VALUES (?1, ?2, ?3, ?4)",
                params![u.name, u.password_hash, u.hashing_algorithm, json(&u.tags)],
            )
            .map_err(fail)?;
        }
        for p in registry.permissions.values() {
            tx.execute(
                "INSERT INTO access_permissions VALUES (?1, ?2, ?3, ?4, ?5)",
                params![p.user, p.vhost, p.configure, p.write, p.read],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)
    }
}

fn tags(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}

fn json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

fn fail(path: &Path, e: rusqlite::Error) -> Error {
    Error::storage(format!(
        "the users, vhosts and permissions in {}: {e}",
        path.display()
    ))
}
