//! Protocol upgrades (websocket and others): once the upstream answered 101,
//! both connections are taken over from hyper and bytes are copied both ways
//! until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

pub fn spawn(client: OnUpgrade, upstream: OnUpgrade, route: String) {
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
        match tokio::io::copy_bidirectional(&mut c, &mut u).await {
            Ok((up, down)) => tracing::debug!(%route, bytes_up = up, bytes_down = down, "upgraded connection closed"),
            Err(error) => tracing::debug!(%route, %error, "upgraded connection ended with an error"),
        }
    });
}
