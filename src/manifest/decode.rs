//! Typed decoding of YAML nodes, collecting every error instead of stopping at one.
//!
//! Owns: the [`Decode`] trait, its impls for scalars, lists and maps, the
//! [`manifest_struct!`] macro that declares a manifest struct and its decoder from
//! one field table, and the [`Diagnostics`] sink. Must not know which fields a
//! manifest has: that is `types`.
//!
//! Hand-written rather than serde-derived: serde stops at the first error and
//! forgets positions, and a manifest author wants every mistake in the file, each
//! with its line and column, and a "did you mean" for misspelt fields.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use super::yaml::{Node, NodeKind, Pos};

/// One problem found in a manifest, at a position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// Where decoding and validation put what they find.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// The directory of the manifest being decoded, for `@pkg:` references.
    pub base_dir: Option<std::path::PathBuf>,
}

impl Diagnostics {
    pub fn error(&mut self, pos: &Pos, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            pos: pos.clone(),
            message: message.into(),
        });
    }

    pub fn warning(&mut self, pos: &Pos, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            pos: pos.clone(),
            message: message.into(),
        });
    }

    /// Reports a wrongly typed value for `key`.
    pub fn expected(&mut self, node: &Node, key: &str, what: &str) {
        self.error(
            &node.pos,
            format!("{key}: expected {what}, found {}", node.describe()),
        );
    }

    /// Decodes an optional field: an empty value means "not set".
    pub fn field<T: Decode>(&mut self, key: &str, node: &Node) -> Option<T> {
        if node.is_null() {
            return None;
        }
        T::decode(key, node, self)
    }

    /// Reports a key that the struct does not have, with the closest known key.
    pub fn unknown_field(&mut self, key: &Node, name: &str, known: &[&str], what: &str) {
        let mut message = format!("unknown field \"{name}\" in {what}");
        if let Some(best) = closest(name, known) {
            message.push_str(&format!(", did you mean \"{best}\"?"));
        } else {
            message.push_str(&format!(" (known fields: {})", known.join(", ")));
        }
        self.error(&key.pos, message);
    }

    /// Splits a mapping node into (key name, key node, value) triples, reporting
    /// non-string and duplicate keys.
    pub fn mapping<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
        what: &str,
    ) -> Option<Vec<(String, &'n Node, &'n Node)>> {
        let NodeKind::Map(entries) = &node.kind else {
            self.expected(node, key, what);
            return None;
        };
        let mut out: Vec<(String, &Node, &Node)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let NodeKind::Scalar { value, .. } = &k.kind else {
                self.error(&k.pos, format!("{key}: keys must be strings"));
                continue;
            };
            if let Some((_, first, _)) = out.iter().find(|(name, _, _)| name == value) {
                let first = first.pos.clone();
                self.error(
                    &k.pos,
                    format!("duplicate key \"{value}\" (first set at {first})"),
                );
                continue;
            }
            out.push((value.clone(), k, v));
        }
        Some(out)
    }
}

/// The known name closest to `name`, if it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::levenshtein(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// A value that can be read from a node. `key` names the field for messages.
pub trait Decode: Sized {
    fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self>;
}

/// YAML 1.1 booleans, as LinuxKit's Go YAML library reads them.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// A YAML integer: decimal, `0x` hex, `0o` octal, optional sign, `_` separators.
pub fn parse_int(s: &str) -> Option<i128> {
    let s = s.replace('_', "");
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(&s)),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i128::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -value } else { value })
}

impl Decode for String {
    fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self> {
        match &node.kind {
            // Go's YAML decoder puts any scalar's text into a string field
            // (`mode: 0644` is the string "0644"), and so does Hull.
            NodeKind::Scalar { value, .. } if !node.is_null() => Some(value.clone()),
            _ => {
                cx.expected(node, key, "a string");
                None
            }
        }
    }
}

impl Decode for bool {
    fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self> {
        match &node.kind {
            NodeKind::Scalar { value, plain: true } => {
                let b = parse_bool(value);
                if b.is_none() {
                    cx.expected(node, key, "true or false");
                }
                b
            }
            _ => {
                cx.expected(node, key, "true or false");
                None
            }
        }
    }
}

macro_rules! decode_int {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self> {
                let what = concat!("an integer (", stringify!($t), ")");
                match &node.kind {
                    NodeKind::Scalar { value, plain: true } => {
                        match parse_int(value).map(<$t>::try_from) {
                            Some(Ok(v)) => Some(v),
                            Some(Err(_)) => {
                                cx.error(&node.pos, format!(
                                    "{key}: {value} is out of range for {}",
                                    stringify!($t)
                                ));
                                None
                            }
                            None => {
                                cx.expected(node, key, what);
                                None
                            }
                        }
                    }
                    _ => {
                        cx.expected(node, key, what);
                        None
                    }
                }
            }
        }
    )*};
}
decode_int!(i32, i64, u16, u32, u64);

impl<T: Decode> Decode for Vec<T> {
    fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self> {
        let NodeKind::Seq(items) = &node.kind else {
            cx.expected(node, key, "a list");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match T::decode(key, item, cx) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

impl<T: Decode> Decode for BTreeMap<String, T> {
    fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self> {
        let entries = cx.mapping(node, key, "a mapping")?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, _, value) in entries {
            match T::decode(&format!("{key}.{name}"), value, cx) {
                Some(v) => {
                    out.insert(name, v);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// A value with the position it was written at, serialized as the bare value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T: Decode> Decode for Spanned<T> {
    fn decode(key: &str, node: &Node, cx: &mut Diagnostics) -> Option<Self> {
        T::decode(key, node, cx).map(|value| Spanned {
            value,
            pos: node.pos.clone(),
        })
    }
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Declares a manifest struct whose fields are all optional, with the YAML key
/// of each, and derives its [`Decode`] impl: unknown keys are errors with a
/// "did you mean", every field error is reported, and `pos` records where the
/// mapping started. The struct serializes with the same keys, unset fields left out.
macro_rules! manifest_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident ($what:literal) {
            $( $(#[$fmeta:meta])* $field:ident : $fty:ty => $key:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(rename = $key, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$fty>,
            )*
            /// Where this entry starts in its manifest.
            #[serde(skip)]
            pub pos: $crate::manifest::yaml::Pos,
        }

        impl $name {
            /// The YAML keys this struct accepts.
            pub const KEYS: &'static [&'static str] = &[$($key),*];

            /// Decodes `value` into the field named `name`; false if there is none.
            pub fn set_field(
                &mut self,
                name: &str,
                value: &$crate::manifest::yaml::Node,
                cx: &mut $crate::manifest::decode::Diagnostics,
            ) -> bool {
                match name {
                    $( $key => { self.$field = cx.field($key, value); true } )*
                    _ => false,
                }
            }
        }

        impl $crate::manifest::decode::Decode for $name {
            fn decode(
                key: &str,
                node: &$crate::manifest::yaml::Node,
                cx: &mut $crate::manifest::decode::Diagnostics,
            ) -> Option<Self> {
                let entries = cx.mapping(node, key, concat!("a mapping (", $what, ")"))?;
                let mut out = Self { pos: node.pos.clone(), ..Self::default() };
                for (name, key_node, value) in entries {
                    if !out.set_field(&name, value, cx) {
                        cx.unknown_field(key_node, &name, Self::KEYS, $what);
                    }
                }
                Some(out)
            }
        }
    };
}
pub(crate) use manifest_struct;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;

    manifest_struct! {
        /// A test struct.
        pub struct Sample ("a sample") {
            name: String => "name",
            count: u32 => "count",
            flags: Vec<bool> => "flags",
        }
    }

    fn decode(text: &str) -> (Option<Sample>, Vec<String>) {
        let node = parse("t.yml", text).expect("valid yaml");
        let mut cx = Diagnostics::default();
        let out = Sample::decode("sample", &node, &mut cx);
        cx.errors.sort();
        (out, cx.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_error_is_reported_with_its_position() {
        let (_, errors) = decode("nmae: x\ncount: lots\nflags: [true, maybe]\n");
        assert_eq!(
            errors,
            vec![
                "t.yml:1:1: unknown field \"nmae\" in a sample, did you mean \"name\"?",
                "t.yml:2:8: count: expected an integer (u32), found a string",
                "t.yml:3:15: flags: expected true or false, found a string",
            ]
        );
    }

    #[test]
    fn numbers_become_strings_and_null_means_unset() {
        let (out, errors) = decode("name: 0644\ncount: 0x10\nflags:\n");
        assert!(errors.is_empty(), "{errors:?}");
        let out = out.expect("decodes");
        assert_eq!(out.name.as_deref(), Some("0644"));
        assert_eq!(out.count, Some(16));
        assert_eq!(out.flags, None);
    }

    #[test]
    fn out_of_range_and_duplicate_keys_are_errors() {
        let (_, errors) = decode("count: -1\ncount: 2\n");
        assert_eq!(
            errors,
            vec![
                "t.yml:1:8: count: -1 is out of range for u32",
                "t.yml:2:1: duplicate key \"count\" (first set at t.yml:1:1)",
            ]
        );
    }

    #[test]
    fn closest_suggests_only_near_names() {
        assert_eq!(closest("comand", &["command", "cwd"]), Some("command"));
        assert_eq!(closest("zzzzzz", &["command", "cwd"]), None);
    }
}
