//! The load generator: N connections in a closed loop (each sends its next request when the
//! last one is answered), bounded in time and in count, loopback only.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder};

/// An HTTP client of its own (one keep-alive connection), never through a proxy.
pub fn client() -> Client {
    pooled_client(1)
}

/// An HTTP client keeping up to `connections` keep-alive connections.
pub fn pooled_client(connections: usize) -> Client {
    Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(connections)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client")
}

/// Sends a request and reads the whole answer (so the connection is reused); true on 2xx.
pub async fn ok(request: RequestBuilder) -> bool {
    match request.send().await {
        Ok(response) => {
            let success = response.status().is_success();
            response.bytes().await.is_ok() && success
        }
        Err(_) => false,
    }
}

/// What a run of the load generator measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency of every request, microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl Stats {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the latencies, in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        percentile_us(&self.latencies_us, q) / 1000.0
    }
}

/// Nearest-rank quantile of sorted values.
pub fn percentile_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

/// The middle value (mean of the two middle ones for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `request(client, i)` for i = 0, 1, 2, … on `connections` connections at once until
/// `duration` has passed or `max_requests` were sent. Each connection is opened (with a
/// `GET /healthz`) before the clock starts.
pub async fn closed_loop<F, Fut>(
    base: &str,
    connections: usize,
    duration: Duration,
    max_requests: Option<u64>,
    request: F,
) -> Stats
where
    F: Fn(Client, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let request = Arc::new(request);
    let start = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (request, start, next) = (request.clone(), start.clone(), next.clone());
        let warm_up = format!("{base}/healthz");
        workers.push(tokio::spawn(async move {
            let client = client();
            ok(client.get(&warm_up)).await;
            start.wait().await;
            let deadline = Instant::now() + duration;
            let (mut good, mut bad, mut latencies) = (0u64, 0u64, Vec::new());
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if max_requests.is_some_and(|max| i >= max) {
                    break;
                }
                let sent = Instant::now();
                let success = request(client.clone(), i).await;
                latencies.push(sent.elapsed().as_micros() as u64);
                if success {
                    good += 1;
                } else {
                    bad += 1;
                }
            }
            (good, bad, latencies)
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let mut stats = Stats::default();
    for worker in workers {
        if let Ok((good, bad, latencies)) = worker.await {
            stats.ok += good;
            stats.errors += bad;
            stats.latencies_us.extend(latencies);
        }
    }
    stats.elapsed = began.elapsed();
    stats.latencies_us.sort_unstable();
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_medians() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_us(&v, 0.5), 50.0);
        assert_eq!(percentile_us(&v, 0.99), 99.0);
        assert_eq!(percentile_us(&v, 1.0), 100.0);
        assert!(percentile_us(&[], 0.5).is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
