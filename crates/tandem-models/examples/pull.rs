//! Pulls catalog models into the default store and lists the store.
//!
//! `cargo run --release -p tandem-models --example pull -- smollm2-135m minilm-l6`

use tandem_models::{BarProgress, ModelError, ModelStore};

fn main() -> Result<(), ModelError> {
    let store = ModelStore::from_env();
    let progress = BarProgress::new();
    for name in std::env::args().skip(1) {
        let model = store.pull(&name, &progress)?;
        println!(
            "{} ({}) -> {}",
            model.name,
            model.kind,
            model.path.display()
        );
    }
    for m in store.list()? {
        println!(
            "{:<20} {:<10} {:>12} {:<8} {:<8} {}",
            m.name,
            m.kind,
            m.size,
            m.architecture.as_deref().unwrap_or("-"),
            m.quantization.as_deref().unwrap_or("-"),
            m.path.display()
        );
    }
    Ok(())
}
