//! Protocol upgrades (websocket and others): once the upstream answered 101,
//! both connections are taken over from hyper and bytes are copied both ways
//! until either side closes or the router stops. One task per tunnel, not
//! supervised one by one: its end is the end of one client's connection,
//! logged here, and the stop reaches it through `stop`.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use kit::StopWatch;

pub fn spawn(client: OnUpgrade, upstream: OnUpgrade, route: String, mut stop: StopWatch) {
    tokio::spawn(async move {
        let (c, u) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%route, %error, "upgrade failed");
                return;
            }
        };
        let mut c = TokioIo::new(c);
        let mut u = TokioIo::new(u);
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut c, &mut u) => match copied {
                Ok((up, down)) => tracing::debug!(%route, bytes_up = up, bytes_down = down, "upgraded connection closed"),
                Err(error) => tracing::debug!(%route, %error, "upgraded connection ended with an error"),
            },
            () = stop.stopped() => tracing::debug!(%route, "upgraded connection closed: stopping"),
        }
    });
}
