//! `cargo xtask charts [--kubeconfig PATH]`: checks every Helm chart in
//! `charts/` with the pinned helm (built by [`crate::helm_build`]) and the
//! local control plane.
//!
//! For each chart, and for each values file in its `ci/` directory (the
//! chart-testing convention: `ci/<variant>-values.yaml`) as well as for the
//! default values: `helm lint --strict` (a warning fails it), `helm template`
//! into `target/charts/<chart>[-<variant>].yaml`, then
//! `kubectl apply --dry-run=server` of that file, so the apiserver itself
//! validates and admits every object without storing any. The release
//! namespace is created when missing (nothing else is written).
//!
//! Without `--kubeconfig` the cluster in `target/cluster` is used, started
//! first when it is not running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::progress::format_duration;
use crate::{cluster, controlplane_build, helm_build, kubectl, workspace};

/// The release name and namespace every chart is rendered with.
const RELEASE: &str = "vk";
const NAMESPACE: &str = "vk-system";

/// One rendering of a chart: its default values or one `ci/` values file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variant {
    chart: PathBuf,
    /// `None` for the default values.
    values: Option<PathBuf>,
    /// `vk-mock` or `vk-mock-secret-tls`.
    label: String,
}

/// `cargo xtask charts` with its arguments.
pub fn run(args: &[String]) -> Result<()> {
    let kubeconfig = parse_kubeconfig(args)?;
    let started = Instant::now();
    let helm = helm_build::ensure_built()?;
    let vkcp = controlplane_build::ensure_built()?;
    let kubeconfig = match kubeconfig {
        Some(path) => path,
        None => cluster::up(&workspace::default_cluster_dir(), &vkcp)?,
    };
    let charts_dir = workspace::root().join("charts");
    let variants = variants(&charts_dir)?;
    if variants.is_empty() {
        bail!(
            "no charts (directories with a Chart.yaml) in {}",
            charts_dir.display()
        );
    }
    let out_dir = workspace::root().join("target").join("charts");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    ensure_namespace(&vkcp, &kubeconfig)?;

    for variant in &variants {
        let step = Instant::now();
        eprintln!("\n==> {}", variant.label);
        lint(&helm, variant)?;
        let rendered = out_dir.join(format!("{}.yaml", variant.label));
        let manifest = template(&helm, variant)?;
        fs::write(&rendered, &manifest)
            .with_context(|| format!("writing {}", rendered.display()))?;
        eprintln!(
            "rendered {} objects into {}",
            count_objects(&manifest),
            rendered.display()
        );
        let applied = kubectl::run(
            &vkcp,
            &kubeconfig,
            [
                "apply".as_ref(),
                "--dry-run=server".as_ref(),
                "-f".as_ref(),
                rendered.as_os_str(),
            ],
        )
        .with_context(|| format!("server-side dry run of {}", rendered.display()))?;
        eprint!("{applied}");
        eprintln!(
            "{} passed in {}",
            variant.label,
            format_duration(step.elapsed())
        );
    }
    eprintln!(
        "\n{} chart rendering(s) linted, templated and accepted by the apiserver in {}",
        variants.len(),
        format_duration(started.elapsed())
    );
    Ok(())
}

/// `--kubeconfig PATH` or `--kubeconfig=PATH`.
fn parse_kubeconfig(args: &[String]) -> Result<Option<PathBuf>> {
    let mut kubeconfig = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--kubeconfig" {
            kubeconfig = Some(PathBuf::from(
                iter.next().context("--kubeconfig needs a value")?,
            ));
        } else if let Some(path) = arg.strip_prefix("--kubeconfig=") {
            kubeconfig = Some(PathBuf::from(path));
        } else {
            bail!("unexpected argument {arg:?}; usage: cargo xtask charts [--kubeconfig PATH]");
        }
    }
    Ok(kubeconfig)
}

/// Every chart under `dir`, each with its default values and its `ci/*-values.yaml`.
fn variants(dir: &Path) -> Result<Vec<Variant>> {
    let mut charts: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Chart.yaml").is_file())
        .collect();
    charts.sort();
    let mut out = Vec::new();
    for chart in charts {
        let name = file_name(&chart);
        out.push(Variant {
            chart: chart.clone(),
            values: None,
            label: name.clone(),
        });
        let ci = chart.join("ci");
        if !ci.is_dir() {
            continue;
        }
        let mut values: Vec<PathBuf> = fs::read_dir(&ci)
            .with_context(|| format!("listing {}", ci.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| file_name(p).ends_with("-values.yaml"))
            .collect();
        values.sort();
        for file in values {
            let variant = file_name(&file)
                .trim_end_matches("-values.yaml")
                .to_string();
            out.push(Variant {
                chart: chart.clone(),
                values: Some(file),
                label: format!("{name}-{variant}"),
            });
        }
    }
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `helm lint --strict`: errors and warnings fail.
fn lint(helm: &Path, variant: &Variant) -> Result<()> {
    let mut args = vec![
        "lint".into(),
        "--strict".into(),
        "--namespace".into(),
        NAMESPACE.into(),
    ];
    args.push(variant.chart.as_os_str().to_owned());
    if let Some(values) = &variant.values {
        args.push("--values".into());
        args.push(values.as_os_str().to_owned());
    }
    let out = helm_output(helm, &args)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{text}");
    if !out.status.success() || text.contains("[WARNING]") || text.contains("[ERROR]") {
        bail!(
            "helm lint of {} is not clean ({})",
            variant.label,
            out.status
        );
    }
    Ok(())
}

/// `helm template vk <chart> --namespace vk-system [--values F]`.
fn template(helm: &Path, variant: &Variant) -> Result<String> {
    let mut args = vec![
        "template".into(),
        RELEASE.into(),
        variant.chart.as_os_str().to_owned(),
        "--namespace".into(),
        NAMESPACE.into(),
    ];
    if let Some(values) = &variant.values {
        args.push("--values".into());
        args.push(values.as_os_str().to_owned());
    }
    let out = helm_output(helm, &args)?;
    if !out.status.success() {
        bail!(
            "helm template of {} failed ({}): {}",
            variant.label,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn helm_output(helm: &Path, args: &[std::ffi::OsString]) -> Result<std::process::Output> {
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    eprintln!("helm {}", shown.join(" "));
    Command::new(helm)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running helm {}", shown.join(" ")))
}

/// Creates the release namespace unless it exists: a server-side dry run of
/// namespaced objects needs their namespace.
fn ensure_namespace(vkcp: &Path, kubeconfig: &Path) -> Result<()> {
    let exists = kubectl::output(vkcp, kubeconfig, ["get", "namespace", NAMESPACE])?
        .status
        .success();
    if !exists {
        kubectl::run(vkcp, kubeconfig, ["create", "namespace", NAMESPACE])?;
    }
    Ok(())
}

/// Documents that hold an object (`kind:` at the top level).
fn count_objects(manifest: &str) -> usize {
    manifest.lines().filter(|l| l.starts_with("kind:")).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_argument() -> Result<()> {
        assert_eq!(parse_kubeconfig(&[])?, None);
        let args = vec!["--kubeconfig".to_string(), "/k".to_string()];
        assert_eq!(parse_kubeconfig(&args)?, Some(PathBuf::from("/k")));
        assert_eq!(
            parse_kubeconfig(&["--kubeconfig=/j".to_string()])?,
            Some(PathBuf::from("/j"))
        );
        assert!(parse_kubeconfig(&["extra".to_string()]).is_err());
        Ok(())
    }

    #[test]
    fn every_chart_has_a_default_variant_and_its_ci_values() -> Result<()> {
        let variants = variants(&workspace::root().join("charts"))?;
        assert!(
            variants
                .iter()
                .any(|v| v.label == "vk-mock" && v.values.is_none())
        );
        for v in variants.iter().filter(|v| v.values.is_some()) {
            assert!(v.label.starts_with(&file_name(&v.chart)));
        }
        Ok(())
    }
}
