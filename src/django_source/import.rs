//! The cutover command's work: survey a source's hash formats, then import it in batches.

use std::collections::BTreeMap;

use super::Source;
use crate::{
    auth::HashFormat,
    services::{
        Services,
        django_import::{ImportOptions, ImportRun, ImportTally, hash_formats},
    },
};

/// Every account of the source, a batch at a time, through `each`.
async fn for_each_batch(
    source: &mut Source,
    batch_size: usize,
    mut each: impl AsyncFnMut(Vec<crate::services::django_import::DjangoAccount>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after = 0;
    loop {
        let batch = source.batch(after, batch_size.max(1)).await?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        after = last.id;
        each(batch).await?;
    }
}

/// How many accounts of the source hold each password hash format.
///
/// # Errors
/// When the source fails.
pub async fn survey(
    source: &mut Source,
    batch_size: usize,
) -> anyhow::Result<BTreeMap<HashFormat, u64>> {
    let mut counts = BTreeMap::new();
    for_each_batch(source, batch_size, async |batch| {
        for (format, count) in hash_formats(batch.iter().map(|a| a.password.as_str())) {
            *counts.entry(format).or_insert(0) += count;
        }
        Ok(())
    })
    .await?;
    Ok(counts)
}

/// Imports every account of the source, reporting progress as (done, total) after each
/// batch; an unknown hash format stops it before anything is written unless `options`
/// say to import those accounts without a usable password.
///
/// # Errors
/// When the source or the database fails, or a format is unknown.
pub async fn import(
    services: &Services,
    source: &mut Source,
    options: ImportOptions,
    batch_size: usize,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<ImportTally> {
    let formats = survey(source, batch_size).await?;
    let unknown = formats.get(&HashFormat::Unknown).copied().unwrap_or(0);
    anyhow::ensure!(
        unknown == 0 || options.unknown_hashes_as_unusable,
        "{unknown} accounts hold a password hash in a format this build cannot check; \
         nothing was imported (see --check; --unknown-hashes-unusable imports them without \
         a usable password)"
    );
    let total = formats.values().sum();
    let mut run = ImportRun::new(options);
    let mut done = 0;
    for_each_batch(source, batch_size, async |batch| {
        done += u64::try_from(batch.len()).unwrap_or(u64::MAX);
        services
            .import_django_batch(&mut run, batch)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        progress(done, total);
        Ok(())
    })
    .await?;
    let blacklisted = source.blacklisted_jtis().await?;
    services
        .import_django_blacklist(&mut run, &blacklisted)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    services
        .finish_django_import(&run)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(run.tally)
}
