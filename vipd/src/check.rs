//! The health poller: GETs `--check-url` every `--check-interval` and reports
//! each change of the fall/rise verdict on a channel. Sub-second probing is
//! the point (keepalived's scripts cannot run faster than once a second).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::health::Tracker;

/// How to probe.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub url: String,
    pub interval: Duration,
    pub fall: u32,
    pub rise: u32,
}

/// Starts polling; the verdict starts unhealthy so a node claims the VIP only
/// once its router has answered. Verdict changes arrive on the receiver.
pub fn spawn(config: CheckConfig) -> Result<mpsc::Receiver<bool>, reqwest::Error> {
    // Probes never overlap: a probe that outlives its slot counts as failed.
    let timeout = config.interval.max(Duration::from_millis(100));
    let client = reqwest::Client::builder().timeout(timeout).no_proxy().build()?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut tracker = Tracker::new(config.fall, config.rise, false);
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let ok = match client.get(&config.url).send().await {
                Ok(resp) if resp.status().is_success() => true,
                Ok(resp) => {
                    tracing::debug!(url = %config.url, status = %resp.status(), "health probe failed");
                    false
                }
                Err(error) => {
                    tracing::debug!(url = %config.url, %error, "health probe failed");
                    false
                }
            };
            if let Some(healthy) = tracker.record(ok) {
                tracing::info!(url = %config.url, healthy, "health verdict changed");
                if tx.send(healthy).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}
