//! Time per `LearnedRouter::slm_win_probability` with 2,000 stored vectors of dim 384
//! (target ≤ 0.2 ms), against a named baseline in the same run: a brute-force f64
//! version (f64 dot products, full sort of all similarities).
//!
//! `cargo bench -p tandem-eval --bench knn`

use std::hint::black_box;
use std::time::Instant;

use tandem_eval::knn::LearnedRouter;

const N: usize = 2000;
const DIM: usize = 384;
const K: usize = 10;
const QUERIES: usize = 500;

/// A small deterministic generator (xorshift64*), uniform in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self) -> Vec<f32> {
        (0..DIM).map(|_| self.next()).collect()
    }
}

fn normalized(v: &[f32]) -> Vec<f64> {
    let n = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    v.iter().map(|&x| x as f64 / n).collect()
}

/// Baseline: f64 cosine kNN with a full sort; same formula (weights max(sim, 0), prior 1
/// toward the mean label).
fn brute_force_f64(stored: &[Vec<f64>], labels: &[f64], mean: f64, query: &[f32]) -> f64 {
    let q = normalized(query);
    let mut sims: Vec<(f64, usize)> = stored
        .iter()
        .enumerate()
        .map(|(i, v)| (v.iter().zip(&q).map(|(a, b)| a * b).sum::<f64>(), i))
        .collect();
    sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let (mut num, mut den) = (mean, 1.0);
    for &(s, i) in sims.iter().take(K) {
        let w = s.max(0.0);
        num += w * labels[i];
        den += w;
    }
    num / den
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Clustered data, so neighbours are meaningful: 20 centres plus noise.
    let centres: Vec<Vec<f32>> = (0..20).map(|_| rng.vec()).collect();
    let examples: Vec<(Vec<f32>, f32)> = (0..N)
        .map(|i| {
            let c = &centres[i % centres.len()];
            let v: Vec<f32> = c.iter().map(|&x| x + 0.5 * rng.next()).collect();
            let label = if (i % centres.len()) < 12 { 1.0 } else { 0.0 };
            (v, label)
        })
        .collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES)
        .map(|i| {
            let c = &centres[(i * 7) % centres.len()];
            c.iter().map(|&x| x + 0.5 * rng.next()).collect()
        })
        .collect();

    let router = LearnedRouter::train(&examples, "bench", K)?;
    let stored: Vec<Vec<f64>> = examples.iter().map(|(v, _)| normalized(v)).collect();
    let labels: Vec<f64> = examples.iter().map(|&(_, y)| y as f64).collect();
    let mean = labels.iter().sum::<f64>() / labels.len() as f64;

    // Agreement first.
    let mut max_diff = 0f64;
    for q in &queries {
        let a = router.slm_win_probability(q) as f64;
        let b = brute_force_f64(&stored, &labels, mean, q);
        max_diff = max_diff.max((a - b).abs());
    }

    let time = |f: &dyn Fn(&[f32]) -> f64| {
        // Warm up, then take the best of 5 passes over all queries.
        for q in queries.iter().take(20) {
            black_box(f(q));
        }
        (0..5)
            .map(|_| {
                let t = Instant::now();
                for q in &queries {
                    black_box(f(black_box(q)));
                }
                t.elapsed().as_secs_f64() * 1e3 / QUERIES as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    let ours = time(&|q| router.slm_win_probability(q) as f64);
    let base = time(&|q| brute_force_f64(&stored, &labels, mean, q));

    println!("kNN router: {N} vectors × dim {DIM}, k = {K}, {QUERIES} queries, best of 5");
    println!("  LearnedRouter::slm_win_probability  {ours:.4} ms/prediction");
    println!("  baseline brute-force f64 + sort     {base:.4} ms/prediction");
    println!(
        "  speed-up ×{:.1}; max |Δp| vs baseline {max_diff:.2e}",
        base / ours
    );
    println!(
        "  target ≤ 0.2 ms: {}",
        if ours <= 0.2 { "met" } else { "NOT met" }
    );
    Ok(())
}
