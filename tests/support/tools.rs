//! The system tools the harness needs, and a clear failure when one is missing.

use std::path::{Path, PathBuf};

/// The path of `program` on `PATH`; panics naming the Debian package that
/// provides it if it is not installed.
pub fn require_tool(program: &str, debian_package: &str) -> PathBuf {
    find_on_path(program).unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed (not found on PATH); it comes with the Debian package \
             `{debian_package}`: apt-get install -y --no-install-recommends {debian_package}"
        )
    })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Panics naming `libasound2-plugins` if ALSA's JACK plugin is not installed.
///
/// Without it, opening the device fails deep inside alsa-lib with a message
/// that does not say what to install.
pub fn require_alsa_jack_plugin() {
    const MODULE: &str = "libasound_module_pcm_jack.so";
    let mut dirs: Vec<PathBuf> = vec!["/usr/lib/alsa-lib".into(), "/usr/lib64/alsa-lib".into()];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        // Debian's multiarch layout: /usr/lib/x86_64-linux-gnu/alsa-lib, ...
        dirs.extend(entries.flatten().map(|e| e.path().join("alsa-lib")));
    }
    if let Some(dir) = std::env::var_os("ALSA_PLUGIN_DIR") {
        dirs.push(dir.into());
    }
    if !dirs.iter().any(|dir| dir.join(MODULE).is_file()) {
        panic!(
            "ALSA's JACK plugin ({MODULE}) is not installed; it comes with the Debian package \
             `libasound2-plugins`: apt-get install -y --no-install-recommends libasound2-plugins"
        );
    }
}
