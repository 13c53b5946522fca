//! The schema migrations, embedded in the binary: one list per dialect, always in pairs
//! with the same version and name (a test checks them against `migrations/`).

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::{
    error::BoxDynError,
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
};

use super::{Pool, Result, Store};

/// `(version, name, sql)` of each migration.
type Embedded = &'static [(i64, &'static str, &'static str)];

const SQLITE: Embedded = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "device_acks",
        include_str!("../../migrations/sqlite/0002_device_acks.sql"),
    ),
];
const MYSQL: Embedded = &[
    (
        1,
        "initial",
        include_str!("../../migrations/mysql/0001_initial.sql"),
    ),
    (
        2,
        "device_acks",
        include_str!("../../migrations/mysql/0002_device_acks.sql"),
    ),
];

#[derive(Debug)]
struct EmbeddedSource(Embedded);

impl<'s> MigrationSource<'s> for EmbeddedSource {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

pub(super) async fn run(store: &Store) -> Result<()> {
    match &store.pool {
        Pool::Sqlite(p) => Migrator::new(EmbeddedSource(SQLITE)).await?.run(p).await?,
        Pool::MySql(p) => Migrator::new(EmbeddedSource(MYSQL)).await?.run(p).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dialect: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dialect);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn names(list: Embedded) -> Vec<String> {
        list.iter()
            .map(|(version, name, _)| format!("{version:04}_{name}.sql"))
            .collect()
    }

    #[test]
    fn every_migration_file_is_embedded_in_pairs() {
        assert_eq!(names(SQLITE), files("sqlite"));
        assert_eq!(names(MYSQL), files("mysql"));
        assert_eq!(names(SQLITE), names(MYSQL));
    }
}
