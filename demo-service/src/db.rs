//! The demo's database: SQLite through sqlx's async pool, created and seeded on first start.
//!
//! Seed data is deterministic (a function of the row number), so tests can check what an
//! endpoint returns against what the seed put there.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

/// Seeded users, ids 1..=USERS.
pub const USERS: i64 = 100;
/// Seeded orders: ORDERS_PER_USER for each user.
pub const ORDERS_PER_USER: i64 = 10;
/// Seeded notifications per user; the first UNREAD_PER_USER are unread.
pub const NOTIFICATIONS_PER_USER: i64 = 5;
/// Unread seeded notifications per user.
pub const UNREAD_PER_USER: i64 = 2;

/// Amount of the `k`-th seeded order (1-based) of user `user`, in cents.
pub fn seeded_amount_cents(user: i64, k: i64) -> i64 {
    100 * user + k
}

/// Opens (creating if needed) `dir/demo.sqlite` and seeds it when empty.
pub async fn open(dir: &Path) -> anyhow::Result<SqlitePool> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("demo.sqlite");
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL's usual setting: commits are not fsynced one by one (only checkpoints are),
        // so a disk busy with other writes does not stall every insert for seconds, which
        // would show as batch-import permits held across a slow .await.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    create_schema(&pool).await?;
    seed_if_empty(&pool).await?;
    Ok(pool)
}

async fn create_schema(pool: &SqlitePool) -> sqlx::Result<()> {
    for stmt in [
        "CREATE TABLE IF NOT EXISTS users (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS orders (
            id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users(id),
            amount_cents INTEGER NOT NULL, status TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id)",
        "CREATE TABLE IF NOT EXISTS notifications (
            id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users(id),
            text TEXT NOT NULL, read INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS notifications_user ON notifications(user_id)",
        "CREATE TABLE IF NOT EXISTS job_results (
            id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, total_cents INTEGER NOT NULL)",
    ] {
        sqlx::query(stmt).execute(pool).await?;
    }
    Ok(())
}

async fn seed_if_empty(pool: &SqlitePool) -> sqlx::Result<()> {
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await?;
    if users > 0 {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for id in 1..=USERS {
        sqlx::query("INSERT INTO users (id, name, email) VALUES (?, ?, ?)")
            .bind(id)
            .bind(format!("user-{id}"))
            .bind(format!("user-{id}@example.test"))
            .execute(&mut *tx)
            .await?;
        for k in 1..=ORDERS_PER_USER {
            sqlx::query(
                "INSERT INTO orders (user_id, amount_cents, status) VALUES (?, ?, 'confirmed')",
            )
            .bind(id)
            .bind(seeded_amount_cents(id, k))
            .execute(&mut *tx)
            .await?;
        }
        for k in 1..=NOTIFICATIONS_PER_USER {
            sqlx::query("INSERT INTO notifications (user_id, text, read) VALUES (?, ?, ?)")
                .bind(id)
                .bind(format!("notification {k} for user-{id}"))
                .bind(k > UNREAD_PER_USER)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await
}

/// A user row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// An order row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Order {
    /// Id.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// Amount in cents.
    pub amount_cents: i64,
    /// `pending` or `confirmed`.
    pub status: String,
}

/// Order count and sum of one user.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OrderStats {
    /// Number of orders.
    pub count: i64,
    /// Sum of their amounts, in cents.
    pub total_cents: i64,
}

/// A notification row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Notification {
    /// Id.
    pub id: i64,
    /// Text.
    pub text: String,
}

/// The user with this id, if any.
pub async fn user(pool: &SqlitePool, id: i64) -> sqlx::Result<Option<User>> {
    let row = sqlx::query("SELECT id, name, email FROM users WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| User {
        id: r.get(0),
        name: r.get(1),
        email: r.get(2),
    }))
}

/// The user's newest orders, newest first.
pub async fn recent_orders(
    pool: &SqlitePool,
    user_id: i64,
    limit: i64,
) -> sqlx::Result<Vec<Order>> {
    let rows = sqlx::query(
        "SELECT id, user_id, amount_cents, status FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ?",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(order_of).collect())
}

fn order_of(r: sqlx::sqlite::SqliteRow) -> Order {
    Order {
        id: r.get(0),
        user_id: r.get(1),
        amount_cents: r.get(2),
        status: r.get(3),
    }
}

/// One order.
pub async fn order(pool: &SqlitePool, id: i64) -> sqlx::Result<Option<Order>> {
    let row = sqlx::query("SELECT id, user_id, amount_cents, status FROM orders WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(order_of))
}

/// Count and sum of the user's orders.
pub async fn order_stats(pool: &SqlitePool, user_id: i64) -> sqlx::Result<OrderStats> {
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(SUM(amount_cents), 0) FROM orders WHERE user_id = ?",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await?;
    Ok(OrderStats {
        count: row.get(0),
        total_cents: row.get(1),
    })
}

/// The user's unread notifications, oldest first.
pub async fn unread_notifications(
    pool: &SqlitePool,
    user_id: i64,
) -> sqlx::Result<Vec<Notification>> {
    let rows = sqlx::query(
        "SELECT id, text FROM notifications WHERE user_id = ? AND read = 0 ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Notification {
            id: r.get(0),
            text: r.get(1),
        })
        .collect())
}

/// Inserts a pending order; returns its id.
pub async fn insert_order(pool: &SqlitePool, user_id: i64, amount_cents: i64) -> sqlx::Result<i64> {
    let row = sqlx::query(
        "INSERT INTO orders (user_id, amount_cents, status) VALUES (?, ?, 'pending') RETURNING id",
    )
    .bind(user_id)
    .bind(amount_cents)
    .fetch_one(pool)
    .await?;
    Ok(row.get(0))
}

/// Marks an order confirmed.
pub async fn confirm_order(pool: &SqlitePool, id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE orders SET status = 'confirmed' WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ())
}

/// Stores a worker-pool job's result.
pub async fn store_job_result(
    pool: &SqlitePool,
    job: i64,
    user_id: i64,
    total_cents: i64,
) -> sqlx::Result<()> {
    sqlx::query("INSERT OR REPLACE INTO job_results (id, user_id, total_cents) VALUES (?, ?, ?)")
        .bind(job)
        .bind(user_id)
        .bind(total_cents)
        .execute(pool)
        .await
        .map(|_| ())
}

/// A worker-pool job's result: (user id, total cents).
pub async fn job_result(pool: &SqlitePool, job: i64) -> sqlx::Result<Option<(i64, i64)>> {
    let row = sqlx::query("SELECT user_id, total_cents FROM job_results WHERE id = ?")
        .bind(job)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}
