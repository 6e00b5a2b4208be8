//! Which container a process runs in, from the text of its `/proc/<pid>/cgroup`.
//!
//! Container runtimes name a container's cgroup after its ID; the layouts differ by cgroup driver:
//! systemd puts it in a scope unit (`cri-containerd-<id>.scope`, `docker-<id>.scope`,
//! `crio-<id>.scope`, `libpod-<id>.scope`), cgroupfs in a directory of its own
//! (`/kubepods/burstable/pod<uid>/<id>`, `/docker/<id>`).

/// Container IDs are 64 lowercase hex digits with every runtime Kubernetes supports.
const ID_LEN: usize = 64;

/// Prefixes of the systemd scope units runtimes create per container. `crio-conmon-` is CRI-O's
/// monitor process, not the container, and matches none of these because its rest is not an ID.
const SCOPE_PREFIXES: [&str; 4] = ["cri-containerd-", "docker-", "crio-", "libpod-"];

/// The container ID named by `cgroup` (the content of `/proc/<pid>/cgroup`), or `None` for a process
/// outside any container. The innermost matching path segment wins, so a container nested under
/// another's cgroup resolves to itself.
pub fn container_id(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        // "hierarchy-id:controllers:path"; the path itself may hold ':'.
        let path = line.splitn(3, ':').nth(2)?;
        path.rsplit('/').find_map(segment_id).map(str::to_owned)
    })
}

fn segment_id(segment: &str) -> Option<&str> {
    if is_id(segment) {
        return Some(segment);
    }
    let unit = segment.strip_suffix(".scope")?;
    SCOPE_PREFIXES
        .iter()
        .find_map(|prefix| unit.strip_prefix(prefix))
        .filter(|id| is_id(id))
}

fn is_id(s: &str) -> bool {
    s.len() == ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The container ID of a `containerStatuses[].containerID` (`containerd://<id>`, `docker://<id>`,
/// `cri-o://<id>`), without the runtime prefix; `None` when empty (not started yet).
pub fn strip_runtime(status_id: &str) -> Option<&str> {
    let id = status_id.split_once("://").map_or(status_id, |(_, id)| id);
    Some(id).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "3f1c2a7b9d8e4f60a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778a";

    #[test]
    fn cgroup_v2_systemd_containerd_scope() {
        let text = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b_3c4d.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(container_id(&text).as_deref(), Some(ID));
    }

    #[test]
    fn docker_and_crio_scopes() {
        for unit in [
            format!("docker-{ID}.scope"),
            format!("crio-{ID}.scope"),
            format!("libpod-{ID}.scope"),
        ] {
            let text = format!("0::/kubepods.slice/kubepods-pod1.slice/{unit}");
            assert_eq!(container_id(&text).as_deref(), Some(ID), "{unit}");
        }
    }

    #[test]
    fn cgroup_v1_cgroupfs_kubepods_directory() {
        let text = format!(
            "12:pids:/kubepods/burstable/pod0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6/{ID}\n\
             11:cpu,cpuacct:/kubepods/burstable/pod0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6/{ID}\n\
             1:name=systemd:/kubepods/burstable/pod0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6/{ID}\n"
        );
        assert_eq!(container_id(&text).as_deref(), Some(ID));
    }

    #[test]
    fn a_sub_cgroup_inside_the_container_still_names_it() {
        let text = format!("0::/kubepods.slice/cri-containerd-{ID}.scope/init.scope");
        assert_eq!(container_id(&text).as_deref(), Some(ID));
    }

    #[test]
    fn host_processes_and_conmon_have_no_container() {
        assert_eq!(
            container_id("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(container_id("0::/init.scope"), None);
        assert_eq!(
            container_id(&format!("0::/system.slice/crio-conmon-{ID}.scope")),
            None
        );
        // Upper-case or short hex is not an ID a runtime hands out.
        assert_eq!(
            container_id(&format!("0::/docker/{}", ID.to_uppercase())),
            None
        );
        assert_eq!(container_id("0::/docker/abc123"), None);
        assert_eq!(container_id(""), None);
    }

    #[test]
    fn runtime_prefix_is_stripped() {
        assert_eq!(strip_runtime(&format!("containerd://{ID}")), Some(ID));
        assert_eq!(strip_runtime(&format!("cri-o://{ID}")), Some(ID));
        assert_eq!(strip_runtime(ID), Some(ID));
        assert_eq!(strip_runtime("containerd://"), None);
        assert_eq!(strip_runtime(""), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in ".*") {
            let _ = container_id(&text);
            let _ = strip_runtime(&text);
        }

        #[test]
        fn any_id_in_any_layout_is_found(
            id in "[0-9a-f]{64}",
            parents in proptest::collection::vec("[a-z0-9_.-]{1,20}", 0..5),
            prefix in proptest::sample::select(vec!["", "cri-containerd-", "docker-", "crio-", "libpod-"]),
        ) {
            let leaf = if prefix.is_empty() { id.clone() } else { format!("{prefix}{id}.scope") };
            let text = format!("0::/{}/{leaf}\n", parents.join("/"));
            prop_assert_eq!(container_id(&text), Some(id));
        }
    }
}
