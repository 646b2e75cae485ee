//! router: routes HTTP by Host and path to the healthy instances Consul knows
//! (fabio's `urlprefix-` tags), see cli.rs for flags.
//!
//! Data flow: discovery (Consul blocking queries) -> an immutable routing
//! table swapped in with arc-swap -> the proxy and the admin listener, which
//! only read it. SIGTERM/SIGINT stop the listeners and drain in-flight
//! requests up to `--shutdown-grace`. Every long-lived task runs under one
//! supervisor (edge-kit): discovery and the pool sweeper are restarted if
//! they end, a listener's end stops the process non-zero.

mod admin;
mod autocert;
mod cli;
mod discovery;
mod memory;
mod metrics;
mod proxy;
mod ratelimit;
mod serve;
mod tcp;
#[cfg(test)]
mod testing;
mod tls;

use router::{access, routes};

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kit::{Backoff, OnEnd, Supervisor};
use tokio::net::TcpListener;

fn main() -> anyhow::Result<()> {
    memory::tune();
    let cli = cli::Cli::parse();
    kit::log::init();
    runtime(cli.threads).enable_all().build().context("starting the tokio runtime")?.block_on(run(cli))
}

/// The runtime for `--threads` (default: the CPUs this process may use).
/// One thread: tokio's current-thread scheduler, so the whole process is one
/// thread. A multi-thread runtime with one worker still has two (the worker
/// and `main` in `block_on`), and the kernel takes a slower path to look up
/// each socket of a process whose file table is shared between threads
/// (`fdget`: a reference count taken and dropped on every call). Measured
/// on TCP routes pinned to one core (`wrk -c64 -H 'Connection: close'`
/// through the router and HAProxy in turn, ten rounds): 4-5 % less CPU per
/// new connection than the multi-thread runtime with one worker.
fn runtime(threads: Option<u16>) -> tokio::runtime::Builder {
    let threads =
        threads.map(usize::from).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    }
}

async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let signals = kit::shutdown::Signals::install().context("installing the SIGTERM/SIGINT handlers")?;
    let mut tasks = Supervisor::new();
    let consul = consul::Client::with_config(
        consul::Config::new(cli.consul_addr.clone())
            .token(cli.consul_token.clone())
            .fallbacks(cli.consul_fallback_addrs.clone()),
    )
    .context("Consul address")?;
    let shared = discovery::Shared::new();
    let metrics = Arc::new(metrics::Metrics::default());

    // Bind everything before watching Consul, so a port clash fails at once.
    let mut proxy_listeners = Vec::new();
    for addr in &cli.proxy_addr {
        let l = TcpListener::bind(addr).await.with_context(|| format!("binding the proxy to {addr}"))?;
        proxy_listeners.push(l);
    }
    let mut tls_listeners = Vec::new();
    for addr in &cli.tls_addr {
        let l = TcpListener::bind(addr).await.with_context(|| format!("binding the TLS listener to {addr}"))?;
        tls_listeners.push(l);
    }
    let acme_on = cli.acme_directory.is_some();
    anyhow::ensure!(
        cli.tls_addr.is_empty() || !cli.cert_source.is_empty() || acme_on,
        "--tls-addr needs at least one --cert-source (or --acme-directory)"
    );
    if acme_on {
        anyhow::ensure!(cli.acme_agree_tos, "--acme-directory needs --acme-agree-tos (the CA's terms of service)");
        anyhow::ensure!(cli.acme_domains.is_some(), "--acme-directory needs --acme-domains");
        anyhow::ensure!(!cli.tls_addr.is_empty(), "--acme-directory needs a --tls-addr to serve the certificates on");
    }
    let admin_listener = TcpListener::bind(cli.admin_addr)
        .await
        .with_context(|| format!("binding the admin listener to {}", cli.admin_addr))?;

    let timing = discovery::Timing {
        wait: cli.consul_wait,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(5),
        max_stale: cli.consul_max_stale,
    };
    let tls = match cli.tls_addr.is_empty() {
        true => None,
        false => {
            Some(Arc::new(tls::Tls::new(cli.tls_strict_sni, cli.tls_min_version).context("TLS server configuration")?))
        }
    };
    let acme = match (&tls, &cli.acme_directory, &cli.acme_domains) {
        (Some(t), Some(directory), Some(patterns)) => Some(autocert::Acme::new(
            autocert::Config {
                directory: directory.clone(),
                email: cli.acme_email.clone(),
                ca_root: cli.acme_ca_root.clone(),
                layout: cli.acme_kv_prefix.clone(),
                patterns: patterns.clone(),
                policy: router::acme::plan::Policy {
                    renew_before: cli.acme_renew_before,
                    retry_min: cli.acme_retry_min,
                    retry_max: cli.acme_retry_max,
                },
                challenge: cli.acme_challenge,
                node: format!("pid {} admin {}", std::process::id(), cli.admin_addr),
            },
            consul.clone(),
            shared.clone(),
            t.clone(),
        )),
        _ => None,
    };
    if let Some(t) = &tls {
        // The ACME certificates come last: a --cert-source certificate for
        // a name wins.
        let mut stores = cli.cert_source.clone();
        stores.extend(acme.as_ref().map(|a| a.source()));
        let sources = tls::Sources::new(&stores, cli.tls_default_cert.clone(), t.resolver.clone(), t.provider());
        for (idx, source) in stores.iter().enumerate() {
            sources.spawn(&mut tasks, idx, source.clone(), consul.clone(), shared.clone(), timing);
        }
        if let Some(a) = &acme {
            t.acme.store(Some(a.clone()));
            a.spawn(&mut tasks);
        }
    }
    let discovery_config = discovery::Config {
        tag_prefix: cli.tag_prefix.clone(),
        overrides_key: cli.overrides_key.clone(),
        no_route_html_key: cli.no_route_html_key.clone(),
        timing,
        coalesce: cli.coalesce,
        limits: discovery::Limits { tag_bytes: cli.max_tag_bytes, overrides_bytes: cli.max_overrides_bytes },
        tcp_ports: cli.tcp_ports.clone(),
    };
    let restart = || OnEnd::Restart(Backoff::new(Duration::from_millis(100), Duration::from_secs(5)));
    let discovery_shared = shared.clone();
    tasks.spawn("discovery", restart(), move |stop| {
        discovery::run(consul.clone(), discovery_config.clone(), discovery_shared.clone(), stop)
    });

    let proxy = Arc::new(proxy::Proxy {
        shared: shared.clone(),
        upstreams: proxy::Upstreams::new(cli.connect_timeout).context("TLS client configuration")?,
        strategy: cli.strategy.into(),
        upstream_timeout: cli.upstream_timeout,
        metrics: metrics.clone(),
        pool: proxy::fast::Pool::new(256, proxy::fast::IDLE_TIMEOUT),
        connect_timeout: cli.connect_timeout,
        header_timeout: cli.header_timeout,
        head_limits: serve::HeadLimits { bytes: cli.max_header_bytes, headers: cli.max_headers },
        warnings: ratelimit::Limiter::new(Duration::from_secs(10), 5),
        path_normalize: cli.path_normalize,
        trusted_proxies: cli.trusted_proxies.clone(),
        no_route_status: http::StatusCode::from_u16(cli.no_route_status).context("--no-route-status")?,
        access_log: access::AccessLog::start(&cli.access_log, cli.access_log_format.clone())
            .with_context(|| format!("opening the access log {:?}", cli.access_log))?,
        request_id_header: cli.request_id_header.as_deref().map(str::to_ascii_lowercase),
        https_redirect: match (&tls, cli.tls_addr.first()) {
            (Some(t), Some(addr)) if cli.https_redirect => {
                Some(tls::HttpsRedirect { resolver: t.resolver.clone(), port: addr.port() })
            }
            _ => None,
        },
        stop: tasks.stop().watch(),
        acme: acme.clone(),
    });
    let sweeper = proxy.clone();
    tasks.spawn("pool sweeper", restart(), move |mut stop| {
        let sweeper = sweeper.clone();
        async move {
            let mut every = tokio::time::interval(proxy::fast::IDLE_TIMEOUT / 3);
            loop {
                tokio::select! {
                    _ = every.tick() => sweeper.pool.sweep(),
                    () = stop.stopped() => return Ok::<(), std::convert::Infallible>(()),
                }
            }
        }
    });
    let proxy_in = tcp::ProxyIn { trusted: cli.proxy_protocol_from.clone(), timeout: cli.proxy_protocol_timeout };
    let unbound = Arc::new(tcp::Unbound::default());
    let tcp = Arc::new(tcp::Tcp {
        shared: shared.clone(),
        bind: cli.tcp_bind,
        strategy: cli.strategy.into(),
        connect_timeout: cli.connect_timeout,
        idle_timeout: cli.tcp_idle_timeout,
        proxy_in: proxy_in.clone(),
        unbound: unbound.clone(),
    });
    let accepting = Arc::new(serve::Accepting::default());
    let admin = Arc::new(admin::Admin {
        shared,
        metrics,
        overrides_key: cli.overrides_key.clone(),
        consul_max_stale: cli.consul_max_stale,
        proxy_listeners: proxy_listeners.len(),
        accepting: accepting.clone(),
        vipd: cli.vipd_addr.map(admin::Vipd::new),
        tls: tls.clone(),
        tcp_unbound: unbound,
        tasks: tasks.health(),
    });

    let grace = cli.shutdown_grace;
    for l in proxy_listeners {
        tracing::info!(addr = %l.local_addr()?, "proxy listening");
        let (p, pin, accepting) = (proxy.clone(), proxy_in.clone(), accepting.clone());
        tasks.spawn_essential("proxy listener", move |stop| async move {
            let on_conn = move |mut stream, conn: serve::Conn, drain| {
                let (p, pin) = (p.clone(), pin.clone());
                async move {
                    // PROXY in: the header's address is the client's from here on.
                    let Some(peer) = pin.client(&mut stream, conn.peer).await else { return };
                    proxy::fast::serve_conn(p, stream, serve::Conn { peer, ..conn }, drain).await
                }
            };
            serve::serve("proxy", l, on_conn, stop.receiver(), grace, accepting).await;
            Ok::<(), std::convert::Infallible>(())
        });
    }
    tracing::info!(ports = %cli.tcp_ports, bind = %cli.tcp_bind, "TCP routes may open these ports");
    let tcp_routes = tcp.clone();
    tasks.spawn_essential("tcp routes", move |stop| async move {
        tcp::run(tcp_routes, stop.receiver(), grace).await;
        Ok::<(), std::convert::Infallible>(())
    });
    if let Some(t) = &tls {
        for l in tls_listeners {
            tracing::info!(addr = %l.local_addr()?, "TLS listening");
            let (p, t, tcp) = (proxy.clone(), t.clone(), tcp.clone());
            tasks.spawn_essential("tls listener", move |stop| async move {
                // PROXY in, then the ClientHello: passthrough or termination.
                let on_conn =
                    move |stream, conn, drain| tls::serve_conn(t.clone(), p.clone(), tcp.clone(), stream, conn, drain);
                // Not the proxy listeners /health counts.
                let accepting = Arc::new(serve::Accepting::default());
                serve::serve("tls", l, on_conn, stop.receiver(), grace, accepting).await;
                Ok::<(), std::convert::Infallible>(())
            });
        }
    }
    tracing::info!(addr = %admin_listener.local_addr()?, "admin listening");
    tasks.spawn_essential("admin listener", move |stop| async move {
        let on_conn = move |stream, conn, drain| {
            let a = admin.clone();
            serve::hyper_conn(
                stream,
                conn,
                move |req, c| a.clone().handle(req, c),
                drain,
                serve::ADMIN_HEADER_TIMEOUT,
                serve::HeadLimits::DEFAULT,
            )
        };
        serve::serve("admin", admin_listener, on_conn, stop.receiver(), grace, Arc::new(serve::Accepting::default()))
            .await;
        Ok::<(), std::convert::Infallible>(())
    });

    // The listeners drain for up to the grace; a little more for the rest.
    tasks.run(signals, grace + Duration::from_secs(1)).await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    #[test]
    fn one_thread_is_the_current_thread_scheduler() {
        let flavor = |threads| super::runtime(Some(threads)).enable_all().build().unwrap().handle().runtime_flavor();
        assert_eq!(flavor(1), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(2), RuntimeFlavor::MultiThread);
    }
}
