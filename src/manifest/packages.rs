//! `@pkg:DIR` references resolved after decoding: each becomes the image
//! reference the package builds (its content tag), through a resolver the
//! caller gives (`pkg::resolve`), so that decoding never reads package
//! directories. Errors keep the reference's line and column.

use std::path::Path;

use super::decode::Diagnostics;
use super::types::Manifest;
use super::values::ImageRef;
use super::yaml::Pos;
use super::{finish, LoadError, Loaded};

/// Every image reference of a manifest, with the key it is written under.
fn image_refs(m: &mut Manifest) -> Vec<(&'static str, &mut ImageRef, &Pos)> {
    let mut out = Vec::new();
    if let Some(i) = m.kernel.as_mut().and_then(|k| k.image.as_mut()) {
        out.push(("image", &mut i.value, &i.pos));
    }
    for i in m.init.iter_mut().flatten() {
        out.push(("init", &mut i.value, &i.pos));
    }
    for list in [&mut m.onboot, &mut m.onshutdown, &mut m.services] {
        for i in list.iter_mut().flatten().filter_map(|e| e.image.as_mut()) {
            out.push(("image", &mut i.value, &i.pos));
        }
    }
    for i in m
        .volumes
        .iter_mut()
        .flatten()
        .filter_map(|v| v.image.as_mut())
    {
        out.push(("image", &mut i.value, &i.pos));
    }
    if let Some(i) = m.bootloader.as_mut() {
        out.push(("bootloader", &mut i.value, &i.pos));
    }
    out
}

/// Resolves every `@pkg:` reference of `loaded` with `resolve` (package
/// directory → image reference); each failure is an error at its reference.
pub fn resolve_packages(
    loaded: Loaded,
    resolve: impl Fn(&Path) -> Result<String, String>,
) -> Result<Loaded, LoadError> {
    let Loaded {
        mut manifest,
        warnings,
    } = loaded;
    let mut cx = Diagnostics {
        warnings,
        ..Diagnostics::default()
    };
    for (key, r, pos) in image_refs(&mut manifest) {
        let Some(dir) = r.package.clone().filter(|_| r.reference.is_none()) else {
            continue;
        };
        match resolve(&dir).and_then(|text| ImageRef::parse(&text)) {
            Ok(resolved) => {
                r.text = resolved.text;
                r.reference = resolved.reference;
            }
            Err(e) => cx.error(pos, format!("{key}: \"{}\": {e}", r.text)),
        }
    }
    finish(manifest, cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_resolve_after_decoding_with_errors_at_their_lines() {
        let text = "init:\n  - \"@pkg:a\"\nservices:\n  - name: s\n    image: \"@pkg:b\"\n";
        let loaded = crate::manifest::load_texts(&[(Path::new("dir/m.yml"), text)])
            .expect("decodes without reading packages");
        let init = &loaded.manifest.init.as_ref().expect("init")[0].value;
        assert_eq!(
            (init.text.as_str(), init.reference.is_none()),
            ("@pkg:a", true)
        );
        assert_eq!(init.package.as_deref(), Some(Path::new("dir/a")));

        let fine = resolve_packages(
            crate::manifest::load_texts(&[(Path::new("dir/m.yml"), text)]).expect("decodes"),
            |d| {
                Ok(format!(
                    "hull/{}:1",
                    d.file_name().and_then(|n| n.to_str()).unwrap_or("x")
                ))
            },
        )
        .expect("resolves");
        let init = &fine.manifest.init.as_ref().expect("init")[0].value;
        assert_eq!(init.text, "hull/a:1");
        assert!(init.reference.is_some());

        let Err(LoadError::Invalid { errors, .. }) =
            resolve_packages(loaded, |d| Err(format!("no package at {}", d.display())))
        else {
            panic!("errors expected")
        };
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "dir/m.yml:2:5: init: \"@pkg:a\": no package at dir/a",
                "dir/m.yml:5:12: image: \"@pkg:b\": no package at dir/b",
            ]
        );
    }
}
