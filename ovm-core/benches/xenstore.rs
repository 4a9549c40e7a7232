//! Hermetic benchmarks of the xenstore client: the wire codec, and request
//! round trips (sequential and pipelined) against a minimal in-process
//! daemon on a Unix socket that answers every READ with a fixed value.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ovm_core::xen::client::{XsClient, XsConfig};
use ovm_core::xen::transport::Transport;
use ovm_core::xen::wire::{self, Decoder, Message, MsgType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn codec(c: &mut Criterion) {
    let msg = Message::new(MsgType::Read, 7, 0, wire::nul_strings(&["/local/domain/0/name"])).unwrap();
    let bytes = msg.encode();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_read", |b| b.iter(|| std::hint::black_box(&msg).encode()));
    g.bench_function("decode_read", |b| b.iter(|| wire::decode(std::hint::black_box(&bytes)).unwrap()));
    let many: Vec<u8> = (0..64).flat_map(|_| bytes.iter().copied()).collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("stream_decode_64", |b| {
        b.iter(|| {
            let mut d = Decoder::new();
            d.feed(std::hint::black_box(&many));
            let mut n = 0;
            while let Ok(Some(_)) = d.next_message() {
                n += 1;
            }
            assert_eq!(n, 64);
        })
    });
    g.finish();
}

/// A daemon that answers READ with "Domain-0" and anything else with "OK".
async fn serve(sock: PathBuf) {
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    loop {
        let (mut s, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let mut d = Decoder::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                d.feed(&buf[..n]);
                let mut out = Vec::new();
                while let Ok(Some(m)) = d.next_message() {
                    let body = if m.ty == MsgType::Read { b"Domain-0".to_vec() } else { b"OK\0".to_vec() };
                    out.extend(Message::new(m.ty, m.req_id, m.tx_id, body).unwrap().encode());
                }
                if s.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn round_trips(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("ovm-xs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("socket");
    let _ = std::fs::remove_file(&sock);
    rt.spawn(serve(sock.clone()));
    std::thread::sleep(Duration::from_millis(50));
    let client = rt.block_on(XsClient::connect(Transport::Socket(sock), XsConfig::default())).unwrap();
    let mut g = c.benchmark_group("client_read");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sequential", |b| {
        b.iter(|| rt.block_on(client.read("/local/domain/0/name")).unwrap());
    });
    for depth in [8usize, 64] {
        g.throughput(Throughput::Elements(depth as u64));
        g.bench_with_input(BenchmarkId::new("pipelined", depth), &depth, |b, &depth| {
            b.iter(|| {
                rt.block_on(async {
                    let futs: Vec<_> = (0..depth)
                        .map(|_| {
                            let c = client.clone();
                            tokio::spawn(async move { c.read("/local/domain/0/name").await })
                        })
                        .collect();
                    for f in futs {
                        f.await.unwrap().unwrap();
                    }
                })
            });
        });
    }
    g.finish();
    drop(client);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, codec, round_trips);
criterion_main!(benches);
