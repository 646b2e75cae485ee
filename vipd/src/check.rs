//! The HTTP poller behind `--check-url` and each `--track-url`: GETs the URL
//! every `--check-interval` and reports each change of the fall/rise verdict
//! on a channel. Sub-second probing is the point (keepalived's scripts cannot
//! run faster than once a second); a refused connection fails the verdict at
//! once (see `health`).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::health::{Probe, Tracker};

/// How to probe.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub url: String,
    pub interval: Duration,
    pub fall: u32,
    pub rise: u32,
    /// The verdict before the first probe.
    pub initially: bool,
}

/// Whether `error` is a refused connection somewhere in its chain.
fn refused(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
            return true;
        }
        source = e.source();
    }
    false
}

/// Starts polling; each verdict change is sent on `tx` as `event(verdict)`.
pub fn spawn<E: Send + 'static>(
    config: CheckConfig,
    tx: mpsc::Sender<E>,
    event: impl Fn(bool) -> E + Send + 'static,
) -> Result<(), reqwest::Error> {
    // Probes never overlap: a probe that outlives its slot counts as failed.
    let timeout = config.interval.max(Duration::from_millis(100));
    let client = reqwest::Client::builder().timeout(timeout).no_proxy().build()?;
    tokio::spawn(async move {
        let mut tracker = Tracker::new(config.fall, config.rise, config.initially);
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let probe = match client.get(&config.url).send().await {
                Ok(resp) if resp.status().is_success() => Probe::Passed,
                Ok(resp) => {
                    tracing::debug!(url = %config.url, status = %resp.status(), "probe failed");
                    Probe::Failed
                }
                Err(error) if refused(&error) => {
                    tracing::debug!(url = %config.url, %error, "probe refused");
                    Probe::Refused
                }
                Err(error) => {
                    tracing::debug!(url = %config.url, %error, "probe failed");
                    Probe::Failed
                }
            };
            if let Some(healthy) = tracker.record(probe) {
                tracing::info!(url = %config.url, healthy, ?probe, "verdict changed");
                if tx.send(event(healthy)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}
