//! A restart: the deployments recorded before it are served again, aliases resolved afresh.

use std::time::Duration;

use super::{write, Cause, Manager, Spec};
use crate::error::InferenceError;

impl Manager {
    /// Reads the deployments recorded before a restart, so that from the first request
    /// they are described (loading) rather than unknown; [`Manager::restore`] then
    /// serves them. Returns what it read, for `restore`.
    pub async fn recall(&self) -> anyhow::Result<Vec<crate::store::Stored>> {
        let stored = self.inner.store.all().await?;
        let mut specs = write(&self.inner.specs);
        for s in &stored {
            specs.entry(s.name.clone()).or_insert_with(|| Spec {
                model_id: s.model_id.clone(),
                target: s.selector.clone(),
                settings: s.settings.clone(),
                traffic: s.traffic.clone(),
                previous_version: s.previous_version,
            });
        }
        Ok(stored)
    }

    /// Serves the deployments [`Manager::recall`] read, retrying while the registry
    /// cannot be reached; one that cannot be served for another reason is left failed,
    /// with why. Aliases are resolved afresh, so replicas converge on the registry's
    /// versions whatever they served before.
    pub async fn restore(
        &self,
        stored: Vec<crate::store::Stored>,
        stop: mlops_runtime::shutdown::CancellationToken,
    ) -> anyhow::Result<()> {
        for s in stored {
            let mut wait = Duration::from_millis(200);
            loop {
                match self
                    .deploy(
                        &s.name,
                        s.selector.clone(),
                        s.settings.clone(),
                        Cause::Restore,
                    )
                    .await
                {
                    Ok(_) => {
                        if !s.traffic.is_empty() {
                            if let Err(e) = self
                                .set_traffic(&s.name, s.traffic.clone(), Cause::Restore)
                                .await
                            {
                                tracing::error!(model = %s.name, error = %e, "cannot restore the traffic split; the stable target serves everything");
                            }
                        }
                        break;
                    }
                    Err(InferenceError::Unavailable(reason)) => {
                        tracing::warn!(model = %s.name, %reason, "cannot restore the model yet; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(wait) => {}
                        }
                        wait = (wait * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => {
                        tracing::error!(model = %s.name, error = %e, "cannot restore the model");
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}
