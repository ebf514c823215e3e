//! `carrot definitions` and `carrot vhost`: RabbitMQ's definitions and virtual hosts of a
//! sqlite:// broker file (what `carrot serve` over that file serves at its next start; a
//! running server is changed through its management API).

use std::path::PathBuf;

use clap::Subcommand;

use carrot::server::{Admin, Definitions};

use crate::failure::Failure;

#[derive(Subcommand, Debug)]
pub(crate) enum DefinitionsCommand {
    /// Write the users, vhosts, permissions, exchanges, queues and bindings as RabbitMQ's
    /// definitions JSON (to FILE, or stdout).
    Export {
        /// Where to write them.
        file: Option<PathBuf>,
    },
    /// Import RabbitMQ's definitions JSON (from `rabbitmqctl export_definitions` or the
    /// management API): adds and updates, never deletes.
    Import {
        /// The definitions file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum VhostCommand {
    /// List the vhosts, one per line.
    List,
    /// Create a vhost (or change its description).
    Add {
        /// Its name.
        name: String,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a vhost with every exchange and queue in it.
    Delete {
        /// Its name.
        name: String,
    },
}

pub(crate) async fn definitions(url: &str, command: DefinitionsCommand) -> Result<(), Failure> {
    let admin = Admin::open(url).await?;
    match command {
        DefinitionsCommand::Export { file } => {
            let text = serde_json::to_string_pretty(&admin.export().await?)
                .map_err(|e| Failure::from(carrot::Error::InvalidArgument(e.to_string())))?;
            match file {
                Some(file) => std::fs::write(&file, text + "\n").map_err(|e| {
                    Failure::from(carrot::Error::InvalidArgument(format!(
                        "cannot write {}: {e}",
                        file.display()
                    )))
                })?,
                None => println!("{text}"),
            }
        }
        DefinitionsCommand::Import { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                Failure::from(carrot::Error::InvalidArgument(format!(
                    "cannot read {}: {e}",
                    file.display()
                )))
            })?;
            admin.import(&Definitions::parse(&text)?).await?;
        }
    }
    Ok(())
}

pub(crate) async fn vhost(url: &str, command: VhostCommand) -> Result<(), Failure> {
    let admin = Admin::open(url).await?;
    match command {
        VhostCommand::List => {
            for vhost in admin.access().vhosts() {
                println!("{}", vhost.name);
            }
        }
        VhostCommand::Add { name, description } => {
            admin.add_vhost(&name, &description)?;
        }
        VhostCommand::Delete { name } => {
            if !admin.delete_vhost(&name).await? {
                return Err(carrot::Error::NotFound(format!("no vhost {name:?}")).into());
            }
        }
    }
    Ok(())
}
