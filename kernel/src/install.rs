//! `kestrel install`: writes the `kestrel` kernelspec so Jupyter can start this binary.

use anyhow::Context;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Where Jupyter looks for user kernelspecs: `$JUPYTER_DATA_DIR/kernels`, else `~/.local/share/jupyter/kernels`.
fn user_kernels_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("JUPYTER_DATA_DIR") {
        return Ok(PathBuf::from(dir).join("kernels"));
    }
    let data = dirs::data_dir().context("cannot find the user's data directory; use --prefix")?;
    Ok(data.join("jupyter").join("kernels"))
}

/// Writes `<kernels>/<name>/kernel.json` pointing at `exe`; returns the kernelspec directory.
pub fn install(prefix: Option<&Path>, name: &str, exe: &Path) -> anyhow::Result<PathBuf> {
    // jupyter_client ignores kernelspec directories whose names are not of this form.
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        anyhow::bail!(
            "invalid kernelspec name '{name}': use letters, digits, '.', '_' and '-' only"
        );
    }
    let kernels = match prefix {
        Some(p) => p.join("share").join("jupyter").join("kernels"),
        None => user_kernels_dir()?,
    };
    let dir = kernels.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let spec = json!({
        "argv": [exe.display().to_string(), "kernel", "-f", "{connection_file}"],
        "display_name": "Kestrel (SQL)",
        "language": "sql",
        "interrupt_mode": "message",
        "metadata": { "debugger": false },
    });
    let path = dir.join("kernel.json");
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::write(dir.join("logo-svg.svg"), LOGO)
        .with_context(|| format!("cannot write the logo in {}", dir.display()))?;
    Ok(dir)
}

const LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#1f4e79"/><path d="M12 40 L32 18 L52 40 L40 34 L32 46 L24 34 Z" fill="#f2a541"/></svg>"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_kernelspec_under_the_prefix() {
        let prefix = std::env::temp_dir().join(format!("kestrel-install-{}", std::process::id()));
        let dir = install(Some(&prefix), "kestrel", Path::new("/opt/kestrel")).expect("install");
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("kernel.json")).expect("read"))
                .expect("json");
        assert_eq!(spec["display_name"], "Kestrel (SQL)");
        assert_eq!(spec["language"], "sql");
        assert_eq!(
            spec["argv"],
            json!(["/opt/kestrel", "kernel", "-f", "{connection_file}"])
        );
        assert!(install(Some(&prefix), "My Kernel", Path::new("/opt/kestrel")).is_err());
        let _ = std::fs::remove_dir_all(prefix);
    }
}
