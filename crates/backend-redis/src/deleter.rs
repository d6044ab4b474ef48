//! Deletion: an item's data key, record and chunks go together, in one script per batch (per
//! slot on a cluster).

use cachette_core::plugin::Key;
use futures::{StreamExt, TryStreamExt, stream};

use crate::backend::Inner;
use crate::conn::Conn;
use crate::error::Res;
use crate::lister::{BATCH_PARALLELISM, batches};
use crate::lua;

impl Inner {
    /// Deletes items by key; missing ones are skipped.
    pub(crate) async fn delete_keys(&self, keys: &[Key]) -> Res<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.connector.conn().await?;
        let data = keys.iter().map(|k| self.layout.data(k)).collect();
        self.delete_data(&mut conn, data).await.map(|_| ())
    }

    /// Deletes items by data key; gives how many existed. On a cluster, one script per slot.
    pub(crate) async fn delete_data(&self, conn: &mut Conn, data: Vec<String>) -> Res<u64> {
        let batches = batches(conn.is_cluster(), data);
        let deletes = batches.into_iter().map(|batch| {
            let mut conn = conn.clone();
            async move {
                lua::eval(lua::DELETE, &batch)
                    .query_async::<u64>(&mut conn)
                    .await
            }
        });
        let counts: Vec<u64> = stream::iter(deletes)
            .buffer_unordered(BATCH_PARALLELISM)
            .try_collect()
            .await?;
        Ok(counts.into_iter().sum())
    }
}
