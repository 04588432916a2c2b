//! CRI-O: a drop-in `/etc/crio/crio.conf.d/99-boundary-runc.conf` with a
//! `[crio.runtime.runtimes.NAME]` entry. CRI-O merges its drop-ins in name
//! order, so `99-` comes after the distribution's own files.

use toml_edit::Value;

use super::{read_optional, FileChange, InstallError, Registration};

fn quoted(s: &str) -> String {
    Value::from(s).decorated("", "").to_string()
}

/// The drop-in's whole text.
pub fn dropin_text(reg: &Registration) -> String {
    let mut s = String::new();
    s.push_str("# Registers boundary-runc as a CRI-O runtime handler. Written by\n");
    s.push_str("# `boundary-runc install crio`; `boundary-runc uninstall crio` removes it.\n");
    s.push_str(&format!("[crio.runtime.runtimes.{}]\n", quoted(&reg.name)));
    s.push_str(&format!("runtime_path = {}\n", quoted(&reg.binary_str())));
    s.push_str("runtime_type = \"oci\"\n");
    s.push_str("allowed_annotations = [\"io.boundary.allow\"]\n");
    s
}

/// The runtimes a CRI-O config file declares, as (name, runtime_path).
pub fn registered(text: &str) -> Vec<(String, String)> {
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else { return Vec::new() };
    let runtimes = doc.get("crio").and_then(|i| i.get("runtime")).and_then(|i| i.get("runtimes")).and_then(toml_edit::Item::as_table_like);
    let Some(runtimes) = runtimes else { return Vec::new() };
    runtimes
        .iter()
        .map(|(name, e)| (name.to_string(), e.get("runtime_path").and_then(toml_edit::Item::as_str).unwrap_or_default().to_string()))
        .collect()
}

pub fn plan_install(paths: &super::Paths, reg: &Registration) -> Result<Vec<FileChange>, InstallError> {
    let path = paths.crio_dropin();
    let before = read_optional(&path)?;
    Ok(vec![FileChange::dropin(path, before, Some(dropin_text(reg)))])
}

pub fn plan_uninstall(paths: &super::Paths) -> Result<Vec<FileChange>, InstallError> {
    let path = paths.crio_dropin();
    let before = read_optional(&path)?;
    Ok(vec![FileChange::dropin(path, before, None)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropin_is_valid_toml_with_the_entry() {
        let reg = Registration::new("boundary-runc", "/usr/local/bin/boundary-runc".into()).unwrap();
        let v: toml::Value = toml::from_str(&dropin_text(&reg)).unwrap();
        assert_eq!(registered(&dropin_text(&reg)), [("boundary-runc".to_string(), "/usr/local/bin/boundary-runc".to_string())]);
        let rt = &v["crio"]["runtime"]["runtimes"]["boundary-runc"];
        assert_eq!(rt["runtime_path"].as_str(), Some("/usr/local/bin/boundary-runc"));
        assert_eq!(rt["runtime_type"].as_str(), Some("oci"));
        assert_eq!(rt["allowed_annotations"][0].as_str(), Some("io.boundary.allow"));
    }

    #[test]
    fn install_is_idempotent_and_uninstall_removes_it() {
        let d = tempfile::tempdir().unwrap();
        let p = crate::install::Paths::under(d.path());
        let reg = Registration::new("boundary-runc", "/usr/local/bin/boundary-runc".into()).unwrap();
        let mut out = Vec::new();
        assert!(crate::install::apply_all(&plan_install(&p, &reg).unwrap(), false, &mut out).unwrap());
        assert!(!crate::install::apply_all(&plan_install(&p, &reg).unwrap(), false, &mut out).unwrap());
        assert!(!d.path().join("99-boundary-runc.conf.boundary-runc.bak").exists(), "no backup of a new file");
        assert!(crate::install::apply_all(&plan_uninstall(&p).unwrap(), false, &mut out).unwrap());
        assert!(!p.crio_dropin().exists());
        assert_eq!(std::fs::read_dir(&p.crio_dir).unwrap().count(), 0, "nothing left in the drop-in directory");
    }
}
