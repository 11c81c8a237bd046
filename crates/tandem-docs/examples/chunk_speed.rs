//! Measures extraction and chunking speed on large generated documents.
//! Run: `cargo run --release -p tandem-docs --example chunk_speed`

use std::time::Instant;

use tandem_docs::{ChunkOptions, chunk, extract};

fn chars4(s: &str) -> usize {
    s.chars().count().div_ceil(4)
}

fn main() {
    let mut md = String::new();
    let mut n = 0;
    while md.len() < 8 * 1024 * 1024 {
        n += 1;
        md.push_str(&format!("## 第 {n} 節 Section {n}\n\n"));
        for _ in 0..4 {
            md.push_str("這是一段繁體中文的內容，說明系統如何處理文件與檢索。我們也要測試較長的句子是否能在句號處正確切分！");
            md.push_str("This is an English sentence about chunking. Another one follows, with a clause; and more words.\n\n");
        }
    }
    let zh: String =
        "資料庫檢索系統會把繁體中文文件切成適當大小的片段，以便嵌入與提示使用。".repeat(120_000);
    let inputs = [("mixed.md", md), ("chinese.txt", zh)];
    for (name, src) in inputs {
        let t0 = Instant::now();
        let doc = match extract(name, src.as_bytes()) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{name}: {e}");
                continue;
            }
        };
        let te = t0.elapsed();
        for opts in [
            ChunkOptions::default(),
            ChunkOptions {
                max_tokens: 512,
                overlap_tokens: 64,
            },
        ] {
            let t1 = Instant::now();
            let chunks = chunk(&doc, &opts, &chars4);
            let tc = t1.elapsed();
            let mb = doc.text.len() as f64 / 1e6;
            println!(
                "{name}: {mb:.1} MB text, extract {:.0} ms ({:.1} MB/s), chunk max={} overlap={}: {:.0} ms ({:.1} MB/s), {} chunks",
                te.as_secs_f64() * 1e3,
                src.len() as f64 / 1e6 / te.as_secs_f64(),
                opts.max_tokens,
                opts.overlap_tokens,
                tc.as_secs_f64() * 1e3,
                mb / tc.as_secs_f64(),
                chunks.len()
            );
        }
    }
}
