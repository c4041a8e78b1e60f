//! The durable history and audit store: every tool call and every write attempt (refused and
//! dry-run ones included), kept in SQLite in the per-user data directory. WAL mode and a busy
//! timeout let several server processes (several clients) share one database; a record is
//! acknowledged only once its transaction has committed, so a process killed mid-write loses
//! nothing it acknowledged and corrupts nothing. The schema carries a version (`user_version`)
//! and is migrated forward at open, inside one transaction, whichever process comes first.
//!
//! The store is synchronous (SQLite is); async callers run it on a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

/// One audit record: a tool call, or a write attempt with its review and approval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Assigned by the store (0 before it is stored).
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub client: Option<String>,
    pub client_version: Option<String>,
    pub tool: String,
    /// The call's arguments, with secrets masked by the caller.
    pub arguments: Value,
    /// `ok`, `error`, `refused`, `dry_run`, `applied`, `failed`, `rolled_back`, …
    pub outcome: String,
    pub duration_ms: u64,
    /// The error, refusal or outcome in one line.
    pub message: Option<String>,
    /// Set for write attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<WriteDetails>,
}

/// What a write attempt changed (or would have), and how it was decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WriteDetails {
    pub namespace: String,
    pub service: String,
    pub environment: Option<String>,
    /// The change as a one-line diff (`image payments:2.14.0 → payments:2.13.4`).
    pub change: String,
    /// GO / NO-GO, and the risk level.
    pub verdict: Option<String>,
    pub risk: Option<String>,
    /// The review's evidence in a few lines.
    pub evidence: Option<String>,
    /// How it was approved (`elicitation`, `confirmation token`, `staging policy`…).
    pub approval: Option<String>,
    pub approved_by: Option<String>,
    pub revision_before: Option<i64>,
    pub revision_after: Option<i64>,
}

/// A page of records, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub records: Vec<AuditRecord>,
    /// Pass as `before` for the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "history database {path} has schema version {found}, newer than this sre-mcp knows ({known}); upgrade sre-mcp or use another --data-dir"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("could not create the data directory {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The schema, one migration per version: `MIGRATIONS[n]` takes version n to n + 1.
const MIGRATIONS: &[&str] = &[
    // 1: the audit log; write attempts carry their change, review and approval.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        client TEXT,
        client_version TEXT,
        tool TEXT NOT NULL,
        arguments TEXT NOT NULL,
        outcome TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        message TEXT,
        namespace TEXT,
        service TEXT,
        environment TEXT,
        change TEXT,
        verdict TEXT,
        risk TEXT,
        evidence TEXT,
        approval TEXT,
        approved_by TEXT,
        revision_before INTEGER,
        revision_after INTEGER
    );
    CREATE INDEX audit_writes ON audit (service, id) WHERE change IS NOT NULL;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "history.sqlite3";

/// The per-user data directory (`$XDG_DATA_HOME/sre-mcp`, `~/.local/share/sre-mcp`…).
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("sre-mcp")
}

pub struct HistoryStore {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl HistoryStore {
    /// Opens (creating and migrating as needed) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<HistoryStore, HistoryError> {
        std::fs::create_dir_all(data_dir).map_err(|source| HistoryError::Directory {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let fail = |source| HistoryError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut connection = Connection::open(&path).map_err(fail)?;
        // Another process may hold the write lock for a moment: wait rather than fail.
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(fail)?;
        // WAL: readers never block the writer; NORMAL sync: a commit survives the process
        // being killed (only a power loss may take the newest commits).
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        migrate(&mut connection).map_err(|e| match e {
            Migration::Sqlite(source) => fail(source),
            Migration::TooNew(found) => HistoryError::TooNew {
                path: path.clone(),
                found,
                known: SCHEMA_VERSION,
            },
        })?;
        Ok(HistoryStore {
            path,
            connection: Mutex::new(connection),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `record` and returns its id, once committed.
    pub fn record(&self, record: &AuditRecord) -> Result<i64, HistoryError> {
        let connection = self.connection.lock().expect("history connection");
        let write = record.write.as_ref();
        connection
            .execute(
                "INSERT INTO audit (at, client, client_version, tool, arguments, outcome,
                    duration_ms, message, namespace, service, environment, change, verdict, risk,
                    evidence, approval, approved_by, revision_before, revision_after)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19)",
                params![
                    record.at,
                    record.client,
                    record.client_version,
                    record.tool,
                    record.arguments.to_string(),
                    record.outcome,
                    record.duration_ms as i64,
                    record.message,
                    write.map(|w| &w.namespace),
                    write.map(|w| &w.service),
                    write.and_then(|w| w.environment.as_ref()),
                    write.map(|w| &w.change),
                    write.and_then(|w| w.verdict.as_ref()),
                    write.and_then(|w| w.risk.as_ref()),
                    write.and_then(|w| w.evidence.as_ref()),
                    write.and_then(|w| w.approval.as_ref()),
                    write.and_then(|w| w.approved_by.as_ref()),
                    write.and_then(|w| w.revision_before),
                    write.and_then(|w| w.revision_after),
                ],
            )
            .map_err(|source| self.error(source))?;
        Ok(connection.last_insert_rowid())
    }

    /// Audit records, newest first: `limit` of them older than `before` (all when `None`).
    pub fn audit(&self, before: Option<i64>, limit: usize) -> Result<Page, HistoryError> {
        self.page("1 = 1", None, before, limit)
    }

    /// Write attempts, newest first, for one service (`namespace`, `service`) or all.
    pub fn writes(
        &self,
        service: Option<(&str, &str)>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page, HistoryError> {
        match service {
            Some(service) => self.page(
                "change IS NOT NULL AND namespace = ?2 AND service = ?3",
                Some(service),
                before,
                limit,
            ),
            None => self.page("change IS NOT NULL", None, before, limit),
        }
    }

    fn page(
        &self,
        filter: &str,
        service: Option<(&str, &str)>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page, HistoryError> {
        let connection = self.connection.lock().expect("history connection");
        let sql = format!(
            "SELECT id, at, client, client_version, tool, arguments, outcome, duration_ms,
                message, namespace, service, environment, change, verdict, risk, evidence,
                approval, approved_by, revision_before, revision_after
             FROM audit WHERE id < ?1 AND {filter} ORDER BY id DESC LIMIT {}",
            limit + 1
        );
        let mut statement = connection.prepare_cached(&sql).map_err(|e| self.error(e))?;
        let before = before.unwrap_or(i64::MAX);
        let rows = match service {
            Some((namespace, service)) => statement
                .query_map(params![before, namespace, service], row_to_record)
                .map_err(|e| self.error(e))?
                .collect::<Result<Vec<_>, _>>(),
            None => statement
                .query_map(params![before], row_to_record)
                .map_err(|e| self.error(e))?
                .collect::<Result<Vec<_>, _>>(),
        };
        let mut records = rows.map_err(|e| self.error(e))?;
        let next_before = (records.len() > limit).then(|| {
            records.truncate(limit);
            records.last().map_or(0, |r| r.id)
        });
        Ok(Page {
            records,
            next_before,
        })
    }

    /// The number of records (for `system://health`).
    pub fn count(&self) -> Result<i64, HistoryError> {
        let connection = self.connection.lock().expect("history connection");
        connection
            .query_row("SELECT count(*) FROM audit", [], |row| row.get(0))
            .map_err(|e| self.error(e))
    }

    /// `PRAGMA integrity_check`: "ok" for a sound database.
    pub fn integrity_check(&self) -> Result<String, HistoryError> {
        let connection = self.connection.lock().expect("history connection");
        connection
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .map_err(|e| self.error(e))
    }

    fn error(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    let arguments: String = row.get(5)?;
    let change: Option<String> = row.get(12)?;
    let write = match change {
        Some(change) => Some(WriteDetails {
            namespace: row.get::<_, Option<String>>(9)?.unwrap_or_default(),
            service: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
            environment: row.get(11)?,
            change,
            verdict: row.get(13)?,
            risk: row.get(14)?,
            evidence: row.get(15)?,
            approval: row.get(16)?,
            approved_by: row.get(17)?,
            revision_before: row.get(18)?,
            revision_after: row.get(19)?,
        }),
        None => None,
    };
    Ok(AuditRecord {
        id: row.get(0)?,
        at: row.get(1)?,
        client: row.get(2)?,
        client_version: row.get(3)?,
        tool: row.get(4)?,
        arguments: serde_json::from_str(&arguments).unwrap_or(Value::String(arguments)),
        outcome: row.get(6)?,
        duration_ms: row.get::<_, i64>(7)?.max(0) as u64,
        message: row.get(8)?,
        write,
    })
}

enum Migration {
    Sqlite(rusqlite::Error),
    TooNew(i64),
}

impl From<rusqlite::Error> for Migration {
    fn from(error: rusqlite::Error) -> Self {
        Migration::Sqlite(error)
    }
}

/// Brings the schema to [`SCHEMA_VERSION`], one migration at a time, in one immediate
/// transaction: of several processes opening a new database at once, one migrates and the
/// others find it done.
fn migrate(connection: &mut Connection) -> Result<(), Migration> {
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Migration::TooNew(version));
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", from as i64 + 1)?;
    }
    transaction.commit()?;
    Ok(())
}

/// The stored version of a database file, without migrating it (tests, diagnostics).
pub fn schema_version(path: &Path) -> Result<Option<i64>, rusqlite::Error> {
    if !path.exists() {
        return Ok(None);
    }
    let connection = Connection::open(path)?;
    connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .optional()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(tool: &str, outcome: &str) -> AuditRecord {
        AuditRecord {
            at: "2026-12-03T10:00:00Z".into(),
            client: Some("claude-ai".into()),
            client_version: Some("0.1".into()),
            tool: tool.into(),
            arguments: json!({"namespace": "payments"}),
            outcome: outcome.into(),
            duration_ms: 12,
            ..Default::default()
        }
    }

    fn write(service: &str, change: &str) -> AuditRecord {
        AuditRecord {
            write: Some(WriteDetails {
                namespace: "payments".into(),
                service: service.into(),
                environment: Some("production".into()),
                change: change.into(),
                verdict: Some("GO".into()),
                risk: Some("low".into()),
                approval: Some("elicitation".into()),
                revision_before: Some(7),
                revision_after: Some(8),
                ..Default::default()
            }),
            ..call("rollback_deployment", "applied")
        }
    }

    #[test]
    fn records_come_back_newest_first_in_pages() {
        let dir = tempdir();
        let store = HistoryStore::open(&dir).unwrap();
        for i in 0..5 {
            store.record(&call(&format!("tool{i}"), "ok")).unwrap();
        }
        store
            .record(&write("payment-gateway", "image 2.14.0 → 2.13.4"))
            .unwrap();
        store
            .record(&write("checkout-api", "replicas 3 → 5"))
            .unwrap();
        let first = store.audit(None, 3).unwrap();
        assert_eq!(first.records.len(), 3);
        assert_eq!(first.records[0].tool, "rollback_deployment");
        let second = store.audit(first.next_before, 10).unwrap();
        assert_eq!(second.records.len(), 4);
        assert_eq!(second.next_before, None);
        assert_eq!(second.records.last().unwrap().tool, "tool0");
        let writes = store
            .writes(Some(("payments", "payment-gateway")), None, 10)
            .unwrap();
        assert_eq!(writes.records.len(), 1);
        let details = writes.records[0].write.as_ref().unwrap();
        assert_eq!(details.change, "image 2.14.0 → 2.13.4");
        assert_eq!(
            (details.revision_before, details.revision_after),
            (Some(7), Some(8))
        );
        assert_eq!(store.writes(None, None, 10).unwrap().records.len(), 2);
        assert_eq!(store.count().unwrap(), 7);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn the_schema_is_versioned_and_a_newer_one_is_refused() {
        let dir = tempdir();
        drop(HistoryStore::open(&dir).unwrap());
        let path = dir.join(DATABASE_FILE);
        assert_eq!(schema_version(&path).unwrap(), Some(SCHEMA_VERSION));
        // Reopening migrates nothing and keeps the records.
        let store = HistoryStore::open(&dir).unwrap();
        store.record(&call("list_pods", "ok")).unwrap();
        drop(store);
        let connection = Connection::open(&path).unwrap();
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(connection);
        let error = HistoryStore::open(&dir).err().unwrap().to_string();
        assert!(error.contains("newer than this sre-mcp knows"), "{error}");
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sre-mcp-history-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
