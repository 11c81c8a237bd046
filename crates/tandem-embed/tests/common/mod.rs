//! Where the tests find the real all-MiniLM-L6-v2: `$TANDEM_MINILM_DIR`, or
//! `$TANDEM_HOME/models/minilm-l6` with `TANDEM_HOME` defaulting to `~/.cache/tandem`.

use std::path::PathBuf;

pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TANDEM_MINILM_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("TANDEM_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let user_home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(user_home).join(".cache").join("tandem")
        });
    home.join("models").join("minilm-l6")
}
