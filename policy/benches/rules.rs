//! Evaluation with 1 rule against 10,000 mixed rules, and parsing 10,000.

use std::hint::black_box;

use boundary_policy::{Policy, Request};
use criterion::{criterion_group, criterion_main, Criterion};

const N: usize = 10_000;

/// Exact, suffix-wildcard, inner-wildcard-with-path and port-restricted
/// rules in turn.
fn rules_text(n: usize) -> String {
    let rules: Vec<String> = (0..n)
        .map(|i| match i % 4 {
            0 => format!("domain=host{i}.example.com"),
            1 => format!("domain=*.w{i}.example.org"),
            2 => format!("method=GET domain=api.*.s{i}.test path=/v{i}/*"),
            _ => format!("domain=h{i}.example.net port=8443"),
        })
        .collect();
    rules.join("\n")
}

fn req(host: &str) -> Request<'_> {
    Request {
        method: "GET",
        host,
        path: "/repos/x/y?page=2",
        port: Some(443),
    }
}

fn evaluate(c: &mut Criterion) {
    let one = Policy::from_texts(["domain=host9996.example.com"]).unwrap();
    let many = Policy::from_texts([rules_text(N).as_str()]).unwrap();
    let exact = req("host9996.example.com");
    let wild = req("a.b.w9997.example.org");
    let inner = Request {
        method: "GET",
        host: "api.eu.s9998.test",
        path: "/v9998/items/1",
        port: Some(443),
    };
    let miss = req("nothing.example.com");
    assert!(one.evaluate(&exact).is_allowed() && many.evaluate(&exact).is_allowed());
    assert!(many.evaluate(&wild).is_allowed() && many.evaluate(&inner).is_allowed());
    assert!(!many.evaluate(&miss).is_allowed());

    c.bench_function("evaluate/1 rule/exact allow", |b| {
        b.iter(|| one.evaluate(black_box(&exact)))
    });
    c.bench_function("evaluate/10k rules/exact allow", |b| {
        b.iter(|| many.evaluate(black_box(&exact)))
    });
    c.bench_function("evaluate/10k rules/wildcard allow", |b| {
        b.iter(|| many.evaluate(black_box(&wild)))
    });
    c.bench_function("evaluate/10k rules/inner wildcard + path allow", |b| {
        b.iter(|| many.evaluate(black_box(&inner)))
    });
    c.bench_function("evaluate/1 rule/deny", |b| {
        b.iter(|| one.evaluate(black_box(&miss)))
    });
    c.bench_function("evaluate/10k rules/deny", |b| {
        b.iter(|| many.evaluate(black_box(&miss)))
    });
}

fn parse(c: &mut Criterion) {
    let text = rules_text(N);
    c.bench_function("parse+index/10k rules", |b| {
        b.iter(|| Policy::from_texts([black_box(text.as_str())]).unwrap())
    });
}

criterion_group!(benches, evaluate, parse);
criterion_main!(benches);
