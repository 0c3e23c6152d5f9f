//! A container's settings before they become a spec: what the image config
//! says, the label's settings under the manifest entry's, and numeric ids for
//! the names used as uids and gids.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::manifest::values::Id;
use crate::manifest::ImageConfig;

/// What the image config says about running it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageDefaults {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Reads the `config` section of an image config blob.
pub fn image_defaults(config_json: &[u8]) -> ImageDefaults {
    #[derive(Deserialize)]
    struct Outer {
        #[serde(default)]
        config: Option<ImageDefaults>,
    }
    serde_json::from_slice::<Outer>(config_json)
        .ok()
        .and_then(|o| o.config)
        .unwrap_or_default()
}

/// The label's settings overridden by the manifest entry's, field by field;
/// `capabilities.add` and `binds.add` appended.
pub fn merge(label: &ImageConfig, entry: &ImageConfig) -> ImageConfig {
    macro_rules! pick {
        ($($f:ident),*) => { ImageConfig { $($f: entry.$f.clone().or_else(|| label.$f.clone()),)* pos: entry.pos.clone() } };
    }
    let mut out = pick!(
        capabilities,
        capabilities_add,
        ambient,
        mounts,
        binds,
        binds_add,
        tmpfs,
        devices,
        command,
        env,
        cwd,
        net,
        pid,
        ipc,
        uts,
        userns,
        hostname,
        readonly,
        masked_paths,
        readonly_paths,
        uid,
        gid,
        additional_gids,
        no_new_privileges,
        oom_score_adj,
        rootfs_propagation,
        cgroups_path,
        resources,
        sysctl,
        rlimits,
        uid_mappings,
        gid_mappings,
        annotations,
        runtime,
        restart,
        timeout,
        seccomp,
        control
    );
    for add in [&label.capabilities_add, &entry.capabilities_add]
        .into_iter()
        .flatten()
    {
        out.capabilities
            .get_or_insert_with(Vec::new)
            .extend(add.iter().cloned());
    }
    for add in [&label.binds_add, &entry.binds_add].into_iter().flatten() {
        out.binds
            .get_or_insert_with(Vec::new)
            .extend(add.iter().cloned());
    }
    out.capabilities_add = None;
    out.binds_add = None;
    out
}

/// Numeric ids for names: each container name used as a uid/gid gets one,
/// allocated in name order from 100 up so builds are reproducible.
pub fn allocate_ids(names: &[String]) -> BTreeMap<String, u32> {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    sorted.dedup();
    sorted
        .into_iter()
        .zip(100u32..)
        .map(|(n, id)| (n.clone(), id))
        .collect()
}

/// The number for an id as written; `None` for a name without a number.
pub fn id(value: Option<&Id>, ids: &BTreeMap<String, u32>) -> Option<u32> {
    match value? {
        Id::Number(n) => Some(*n),
        Id::Name(n) => ids.get(n).copied(),
    }
}

/// `uid[:gid]` from an image's `User`, when numeric.
pub fn image_user(user: Option<&str>) -> (Option<u32>, Option<u32>) {
    let Some(u) = user.filter(|u| !u.is_empty()) else {
        return (None, None);
    };
    let (a, b) = u.split_once(':').map_or((u, None), |(a, b)| (a, Some(b)));
    (a.parse().ok(), b.and_then(|b| b.parse().ok()))
}
