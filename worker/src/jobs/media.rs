//! ProcessImage: original → upright, resized, metadata-free variants (WebP and JPEG),
//! stored under content-hashed keys; the EXIF summary (never GPS) goes into the row.
//!
//! A file that cannot be decoded marks the media failed with a message its owner sees,
//! and is not retried (it would fail the same way). Storage and database errors are
//! retried with backoff.

use app::{
    jobs::media::ProcessImage,
    media::{VariantRef, db as media_rows},
};
use sha2::{Digest, Sha256};

use super::{JobContext, JobError, Run};
use crate::media::{self, VARIANT_WIDTHS};

impl Run for ProcessImage {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let db = ctx.db.primary();
        let Some(original_key) = media_rows::pending_original(db, self.media_id).await? else {
            tracing::info!(media_id = self.media_id, "media gone or already processed; nothing to do");
            return Ok(());
        };
        let original = ctx.storage.get(&original_key).await.map_err(|e| JobError::Retry(anyhow::anyhow!("reading original: {e}")))?;
        // CPU-bound: off the async workers.
        let processed = tokio::task::spawn_blocking(move || media::process(&original, &VARIANT_WIDTHS))
            .await
            .map_err(|e| JobError::Retry(e.into()))?;
        let processed = match processed {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(media_id = self.media_id, error = %e, "image rejected");
                media_rows::mark_failed(db, self.media_id, &e.to_string()).await?;
                return Ok(());
            }
        };
        let mut refs = Vec::with_capacity(processed.variants.len());
        for v in &processed.variants {
            let hash: String = Sha256::digest(&v.bytes).iter().take(8).map(|b| format!("{b:02x}")).collect();
            let key = format!("variants/{}/{hash}-{}.{}", self.media_id, v.width, v.format.ext());
            ctx.storage
                .put(&key, v.bytes.clone().into())
                .await
                .map_err(|e| JobError::Retry(anyhow::anyhow!("storing variant: {e}")))?;
            refs.push(VariantRef { width: v.width, height: v.height, format: v.format.ext().replace("jpg", "jpeg"), key });
        }
        media_rows::mark_ready(db, self.media_id, processed.width, processed.height, &processed.exif, &refs).await?;
        tracing::info!(media_id = self.media_id, variants = refs.len(), "image processed");
        Ok(())
    }
}
