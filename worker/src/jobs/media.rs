//! ProcessImage: original → upright, resized, metadata-free variants (WebP and JPEG),
//! stored under content-hashed keys; the EXIF summary (never GPS) goes into the row.
//!
//! A file that cannot be decoded marks the media failed with a message its owner sees,
//! and is not retried (it would fail the same way). Storage and database errors are
//! retried with backoff; when the attempts run out, the media is marked failed too.
//!
//! DeleteMedia: a replaced cover or avatar's files (original, every variant), then its
//! row; never a row a story or user still refers to.

use app::{
    jobs::media::{DeleteMedia, ProcessImage},
    media::{VariantRef, db as media_rows},
};
use sha2::{Digest, Sha256};

use super::{JobContext, JobError, Run};
use crate::media::{self, VARIANT_WIDTHS};

impl Run for ProcessImage {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        let db = ctx.db.primary();
        let Some((original_key, public_id)) = media_rows::pending_original(db, self.media_id).await? else {
            tracing::info!(media_id = self.media_id, "media gone or already processed; nothing to do");
            return Ok(());
        };
        let original = ctx.storage.get(&original_key).await.map_err(|e| JobError::Retry(anyhow::anyhow!("reading original: {e}")))?;
        // CPU-bound: off the async workers, and no more decodes at once than cores, counting
        // those whose job timed out but which still run (see `crate::limiter`).
        let processed = crate::limiter::image_decodes().run(move || media::process(&original, &VARIANT_WIDTHS)).await?;
        let processed = match processed {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(media_id = self.media_id, error = %e, "image rejected");
                media_rows::mark_failed(db, self.media_id, &e.to_string()).await?;
                let tags = media_rows::cache_tags(db, self.media_id).await?;
                crate::invalidate::invalidate(ctx, &tags).await;
                return Ok(());
            }
        };
        let mut refs = Vec::with_capacity(processed.variants.len());
        for v in &processed.variants {
            let hash: String = Sha256::digest(&v.bytes).iter().take(8).map(|b| format!("{b:02x}")).collect();
            // The public id, not the sequential one: keys of images nobody may see
            // (a draft's cover) cannot be made up by counting.
            let key = format!("variants/{}/{hash}-{}.{}", public_id.simple(), v.width, v.format.ext());
            ctx.storage
                .put(&key, v.bytes.clone().into())
                .await
                .map_err(|e| JobError::Retry(anyhow::anyhow!("storing variant: {e}")))?;
            refs.push(VariantRef { width: v.width, height: v.height, format: v.format.ext().replace("jpg", "jpeg"), key });
        }
        if !media_rows::mark_ready(db, self.media_id, processed.width, processed.height, &processed.exif, &refs).await? {
            // Replaced and deleted while we worked (DeleteMedia saw no variants yet):
            // nothing will ever refer to these files. A row still there was processed by
            // a concurrent run, whose (content-addressed, identical) keys must stay.
            if !media_rows::exists(db, self.media_id).await? {
                delete_files(ctx, refs.iter().map(|r| r.key.as_str())).await?;
                tracing::info!(media_id = self.media_id, "media deleted while processing; its variants are removed");
            }
            return Ok(());
        }
        let tags = media_rows::cache_tags(db, self.media_id).await?;
        crate::invalidate::invalidate(ctx, &tags).await;
        tracing::info!(media_id = self.media_id, variants = refs.len(), "image processed");
        Ok(())
    }

    /// Retries ran out (storage or database trouble, or too slow): the media becomes
    /// failed, so its pages stop polling and its owner is asked for another upload. The
    /// cause stays in the job's error for operators; the owner sees a generic message.
    async fn exhausted(self, ctx: &JobContext) -> Result<(), JobError> {
        media_rows::mark_failed(ctx.db.primary(), self.media_id, GAVE_UP_MESSAGE).await?;
        let tags = media_rows::cache_tags(ctx.db.primary(), self.media_id).await?;
        crate::invalidate::invalidate(ctx, &tags).await;
        tracing::warn!(media_id = self.media_id, "image processing gave up; media marked failed");
        Ok(())
    }
}

impl Run for DeleteMedia {
    async fn run(self, ctx: &JobContext) -> Result<(), JobError> {
        // The row stays locked while its files go, and is deleted in the same
        // transaction: if deleting a file fails, nothing is committed and the retry finds
        // the row, and its keys, again (files already gone are fine).
        let mut tx = ctx.db.primary().begin().await?;
        let Some(keys) = media_rows::lock_unreferenced(&mut tx, self.media_id).await? else {
            tracing::info!(media_id = self.media_id, "media gone or still in use; nothing to delete");
            return Ok(());
        };
        delete_files(ctx, keys.iter().map(String::as_str)).await?;
        media_rows::delete_unreferenced(&mut tx, self.media_id).await?;
        tx.commit().await?;
        tracing::info!(media_id = self.media_id, files = keys.len(), "replaced media deleted");
        Ok(())
    }
}

/// Deletes stored files; a missing one is fine (`Storage::delete` is idempotent). A key
/// storage would refuse cannot have been stored: skipped, or the job could never finish.
async fn delete_files<'a>(ctx: &JobContext, keys: impl Iterator<Item = &'a str>) -> Result<(), JobError> {
    for key in keys {
        match ctx.storage.delete(key).await {
            Ok(()) => {}
            Err(app::storage::StorageError::InvalidKey(k)) => tracing::warn!(key = k, "not a storage key; skipped"),
            Err(e) => return Err(JobError::Retry(anyhow::anyhow!("deleting {key}: {e}"))),
        }
    }
    Ok(())
}

/// What the owner reads ("This image could not be used: … Please upload another one.").
pub const GAVE_UP_MESSAGE: &str = "something went wrong while processing it.";
