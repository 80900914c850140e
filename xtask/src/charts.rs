//! `cargo xtask charts [--chart NAME]... [--kubeconfig PATH]`: checks every
//! Helm chart in `charts/` (or the named ones) with the pinned helm (built by
//! [`crate::helm_build`]) and the local control plane.
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
use crate::{cluster, controlplane_build, helm_build, kubectl, options, workspace};

/// The templates every chart shares with the others, byte for byte: a
/// provider's chart differs only in `_provider.tpl`, `NOTES.txt`, templates of
/// its own, `Chart.yaml`, its values and their schema.
const SHARED_TEMPLATES: &[&str] = &[
    "_helpers.tpl",
    "admission-policies.yaml",
    "bootstrap-token.yaml",
    "clusterrole.yaml",
    "configmap.yaml",
    "deployment.yaml",
    "leader-lease-role.yaml",
    "lease-role.yaml",
    "poddisruptionbudget.yaml",
    "serviceaccount.yaml",
];

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

/// What `cargo xtask charts` was asked to do.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    kubeconfig: Option<PathBuf>,
    /// Chart directory names (`vk-mock`); empty: every chart.
    charts: Vec<String>,
}

/// `cargo xtask charts` with its arguments.
pub fn run(args: &[String]) -> Result<()> {
    let Options { kubeconfig, charts } = parse_options(args)?;
    let started = Instant::now();
    let helm = helm_build::ensure_built()?;
    let vkcp = controlplane_build::ensure_built()?;
    let kubeconfig = match kubeconfig {
        Some(path) => path,
        None => cluster::up(&workspace::default_cluster_dir(), &vkcp)?,
    };
    let charts_dir = workspace::root().join("charts");
    check_shared_templates(&charts_dir)?;
    let variants = select(variants(&charts_dir)?, &charts)?;
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

const USAGE: &str = "usage: cargo xtask charts [--chart NAME]... [--kubeconfig PATH]";

/// `--kubeconfig PATH` and `--chart NAME` (repeatable), each also as `--opt=VALUE`.
fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options::default();
    for (name, value) in options::parse(args, &["--kubeconfig", "--chart"], USAGE)? {
        match name.as_str() {
            "--kubeconfig" => options.kubeconfig = Some(PathBuf::from(value)),
            _ => options.charts.push(value),
        }
    }
    Ok(options)
}

/// The variants of the named charts (all when `names` is empty).
fn select(variants: Vec<Variant>, names: &[String]) -> Result<Vec<Variant>> {
    if names.is_empty() {
        return Ok(variants);
    }
    for name in names {
        if !variants.iter().any(|v| file_name(&v.chart) == *name) {
            let mut known: Vec<String> = variants.iter().map(|v| file_name(&v.chart)).collect();
            known.dedup();
            bail!(
                "no chart {name:?} in charts/; there are: {}",
                known.join(", ")
            );
        }
    }
    Ok(variants
        .into_iter()
        .filter(|v| names.contains(&file_name(&v.chart)))
        .collect())
}

/// Every chart under `dir`, each with its default values and its `ci/*-values.yaml`.
fn variants(dir: &Path) -> Result<Vec<Variant>> {
    let mut out = Vec::new();
    for chart in chart_dirs(dir)? {
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

/// The directories under `dir` that hold a `Chart.yaml`, sorted.
fn chart_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut charts: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Chart.yaml").is_file())
        .collect();
    charts.sort();
    Ok(charts)
}

/// Fails unless every chart's copy of each of [`SHARED_TEMPLATES`] equals
/// `charts/vk-mock`'s, and every chart has a `_provider.tpl`.
fn check_shared_templates(charts_dir: &Path) -> Result<()> {
    let reference = charts_dir.join("vk-mock").join("templates");
    for chart in &chart_dirs(charts_dir)? {
        for name in SHARED_TEMPLATES {
            let file = chart.join("templates").join(name);
            let text =
                fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let want = fs::read_to_string(reference.join(name))
                .with_context(|| format!("reading {}", reference.join(name).display()))?;
            if text != want {
                bail!(
                    "{} differs from charts/vk-mock/templates/{name}: the shared templates are \
                     copied unchanged; provider specifics go in _provider.tpl",
                    file.display()
                );
            }
        }
        let provider = chart.join("templates/_provider.tpl");
        if !provider.is_file() {
            bail!("{} is missing", provider.display());
        }
    }
    Ok(())
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
        let created = kubectl::output(vkcp, kubeconfig, ["create", "namespace", NAMESPACE])?;
        // A concurrent run (another chart's test) may have created it meanwhile.
        let stderr = String::from_utf8_lossy(&created.stderr);
        if !created.status.success() && !stderr.contains("AlreadyExists") {
            bail!(
                "kubectl create namespace {NAMESPACE} failed: {}",
                stderr.trim()
            );
        }
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

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubeconfig_and_chart_arguments() -> Result<()> {
        assert_eq!(parse_options(&[])?, Options::default());
        assert_eq!(
            parse_options(&args(&["--kubeconfig", "/k"]))?.kubeconfig,
            Some(PathBuf::from("/k"))
        );
        assert_eq!(
            parse_options(&args(&["--kubeconfig=/j"]))?.kubeconfig,
            Some(PathBuf::from("/j"))
        );
        assert_eq!(
            parse_options(&args(&["--chart", "vk-edge", "--chart=vk-mock"]))?.charts,
            vec!["vk-edge", "vk-mock"]
        );
        assert!(parse_options(&args(&["extra"])).is_err());
        assert!(parse_options(&args(&["--chart"])).is_err());
        Ok(())
    }

    #[test]
    fn charts_are_selected_by_name() -> Result<()> {
        let all = variants(&workspace::root().join("charts"))?;
        let edge = select(all.clone(), &args(&["vk-edge"]))?;
        assert!(!edge.is_empty());
        assert!(edge.iter().all(|v| v.label.starts_with("vk-edge")));
        assert_eq!(select(all.clone(), &[])?.len(), all.len());
        let err = select(all, &args(&["vk-nope"]))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("vk-mock")),
            "lists the charts"
        );
        Ok(())
    }

    #[test]
    fn every_chart_shares_the_common_templates_byte_for_byte() -> Result<()> {
        let charts_dir = workspace::root().join("charts");
        check_shared_templates(&charts_dir)?;

        // A chart whose deployment.yaml drifted is refused.
        let dir = std::env::temp_dir().join(format!("vk-charts-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for chart in ["vk-mock", "vk-other"] {
            let templates = dir.join(chart).join("templates");
            fs::create_dir_all(&templates)?;
            fs::write(dir.join(chart).join("Chart.yaml"), "name: x\n")?;
            fs::write(templates.join("_provider.tpl"), "")?;
            for name in SHARED_TEMPLATES {
                fs::copy(
                    charts_dir.join("vk-mock/templates").join(name),
                    templates.join(name),
                )?;
            }
        }
        check_shared_templates(&dir)?;
        fs::write(
            dir.join("vk-other/templates/deployment.yaml"),
            "kind: Deployment\n",
        )?;
        let err = check_shared_templates(&dir).err().map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("vk-other/templates/deployment.yaml differs")),
            "drift detected"
        );
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn every_chart_has_a_default_variant_and_its_ci_values() -> Result<()> {
        let variants = variants(&workspace::root().join("charts"))?;
        for chart in ["vk-mock", "vk-edge"] {
            assert!(
                variants
                    .iter()
                    .any(|v| v.label == chart && v.values.is_none()),
                "{chart}"
            );
        }
        for v in variants.iter().filter(|v| v.values.is_some()) {
            assert!(v.label.starts_with(&file_name(&v.chart)));
        }
        Ok(())
    }
}
