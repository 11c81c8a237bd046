//! `pull`, `ls`, `rm`, `catalog`, and resolving model names for the other commands.

use anyhow::{Context, Result, bail};
use tandem_models::{BarProgress, ModelKind, ModelStore, ResolvedModel, catalog};

/// Resolve a catalog name or a local path; with `pull`, fetch missing catalog models.
pub fn resolve(store: &ModelStore, name: &str, pull: bool) -> Result<ResolvedModel> {
    if pull && catalog::find(name).is_some() && !store.is_pulled(name) {
        eprintln!(
            "pulling {name} (not found under {})",
            store.root().display()
        );
        return store
            .pull(name, &BarProgress::new())
            .with_context(|| format!("pulling {name}"));
    }
    Ok(store.resolve(name)?)
}

pub fn pull(name: &str) -> Result<()> {
    let store = ModelStore::from_env();
    let m = store.pull(name, &BarProgress::new())?;
    println!("{}: {}", m.name, m.path.display());
    Ok(())
}

fn human(bytes: u64) -> String {
    const U: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut x = bytes as f64;
    let mut i = 0;
    while x >= 1000.0 && i < U.len() - 1 {
        x /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{x:.1} {}", U[i])
    }
}

fn ago(t: std::time::SystemTime) -> String {
    let s = t.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    match s {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} minutes ago", s / 60),
        3600..=86_399 => format!("{} hours ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

pub fn list() -> Result<()> {
    let store = ModelStore::from_env();
    let models = store.list()?;
    if models.is_empty() {
        println!(
            "no models pulled yet under {}; try `tandem pull smollm2-135m`",
            store.root().display()
        );
        return Ok(());
    }
    println!(
        "{:<22} {:<10} {:<10} {:>9} {:<8} {:<8} {:<15} PATH",
        "NAME", "KIND", "ID", "SIZE", "ARCH", "QUANT", "MODIFIED"
    );
    for m in models {
        println!(
            "{:<22} {:<10} {:<10} {:>9} {:<8} {:<8} {:<15} {}",
            m.name,
            match m.kind {
                ModelKind::Chat => "chat",
                ModelKind::Embedding => "embedding",
            },
            &m.digest.get(..8).unwrap_or(&m.digest),
            human(m.size),
            m.architecture.as_deref().unwrap_or("?"),
            m.quantization.as_deref().unwrap_or("?"),
            ago(m.modified),
            m.path.display()
        );
    }
    Ok(())
}

pub fn show_catalog() -> Result<()> {
    let store = ModelStore::from_env();
    println!(
        "{:<22} {:<10} {:>9} {:<7} DESCRIPTION",
        "NAME", "KIND", "SIZE", "PULLED"
    );
    for e in catalog() {
        println!(
            "{:<22} {:<10} {:>9} {:<7} {}",
            e.name,
            match e.kind {
                ModelKind::Chat => "chat",
                ModelKind::Embedding => "embedding",
            },
            human(e.size),
            if store.is_pulled(e.name) { "yes" } else { "no" },
            e.description
        );
    }
    Ok(())
}

pub fn remove(name: &str) -> Result<()> {
    let store = ModelStore::from_env();
    if !store.is_pulled(name) {
        bail!("{name} is not pulled (see `tandem ls`)");
    }
    store.remove(name)?;
    println!("removed {name}");
    Ok(())
}
