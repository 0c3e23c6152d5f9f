//! A container's `runtime.json` as `hull_contract::Runtime`: LinuxKit's
//! `runtime:` section carried over, and Hull's section with its defaults.

use hull_contract::runtime::{BindNs, Hull, IdMapping, Interface, Mount, Runtime};
use hull_contract::Section;

use crate::manifest::types as m;
use crate::manifest::ImageConfig;

/// `runtime.json` for a container of `section` whose image is at `image_dir`
/// (as the booted system sees it).
pub fn runtime_json(c: &ImageConfig, section: Section, image_dir: &str) -> Runtime {
    let written = c.runtime.clone().unwrap_or_default();
    Runtime {
        cgroups: written.cgroups.unwrap_or_default(),
        mounts: written.mounts.iter().flatten().map(mount).collect(),
        mkdir: written.mkdir.unwrap_or_default(),
        interfaces: written.interfaces.iter().flatten().map(interface).collect(),
        bind_ns: written.bind_ns.as_ref().map(bind_ns).unwrap_or_default(),
        namespace: written.namespace,
        hull: Hull {
            control: c.control.as_ref().map(|a| a.value).unwrap_or_default(),
            ..Hull::new(
                section,
                image_dir.to_string(),
                c.readonly.unwrap_or(false),
                c.restart.as_ref().map(|r| r.value),
                c.timeout.as_ref().map(|t| t.value.0),
            )
        },
    }
}

fn mount(w: &m::Mount) -> Mount {
    Mount {
        destination: w
            .destination
            .as_ref()
            .map(|d| d.value.clone())
            .unwrap_or_default(),
        mount_type: w.mount_type.clone(),
        source: w.source.clone(),
        options: w.options.clone().unwrap_or_default(),
        uid_mappings: w.uid_mappings.iter().flatten().map(id_mapping).collect(),
        gid_mappings: w.gid_mappings.iter().flatten().map(id_mapping).collect(),
    }
}

fn id_mapping(w: &m::IdMapping) -> IdMapping {
    IdMapping {
        container_id: w.container_id.unwrap_or(0),
        host_id: w.host_id.unwrap_or(0),
        size: w.size.unwrap_or(0),
    }
}

fn interface(w: &m::Interface) -> Interface {
    Interface {
        name: w.name.as_ref().map(|n| n.value.clone()).unwrap_or_default(),
        add: w.add.clone(),
        peer: w.peer.clone(),
        create_in_root: w.create_in_root.unwrap_or(false),
    }
}

fn bind_ns(w: &m::BindNs) -> BindNs {
    BindNs {
        cgroup: w.cgroup.clone(),
        ipc: w.ipc.clone(),
        mnt: w.mnt.clone(),
        net: w.net.clone(),
        pid: w.pid.clone(),
        user: w.user.clone(),
        uts: w.uts.clone(),
    }
}
