//! Typed reads and writes into a `serde_json::Value`, with the JSON path of
//! every place they look at, so that a malformed document gives an error like
//! `config.json: linux.namespaces[2].type must be a string` instead of a
//! panic or a silent skip.
//!
//! `null` counts as absent everywhere, as it does for the Go decoder runc
//! uses (`null` decodes to the zero value of any field).

use serde_json::{Map, Value};

use super::RewriteError;

/// A place in a JSON document: which document, and the path inside it.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    doc: &'static str,
    path: String,
}

impl Loc {
    pub(crate) fn root(doc: &'static str) -> Self {
        Loc {
            doc,
            path: String::new(),
        }
    }

    /// The member `key` of this place. Keys that are not plain identifiers
    /// (annotation keys such as `run.boundary-runc.host-side`) are written
    /// in brackets so the path stays unambiguous.
    pub(crate) fn key(&self, key: &str) -> Self {
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let path = match (self.path.is_empty(), plain) {
            (true, true) => key.to_owned(),
            (false, true) => format!("{}.{key}", self.path),
            (_, false) => format!("{}[{key:?}]", self.path),
        };
        Loc {
            doc: self.doc,
            path,
        }
    }

    pub(crate) fn idx(&self, index: usize) -> Self {
        Loc {
            doc: self.doc,
            path: format!("{}[{index}]", self.path),
        }
    }

    fn shown(&self) -> String {
        if self.path.is_empty() {
            "the top level".to_owned()
        } else {
            self.path.clone()
        }
    }

    pub(crate) fn wrong(&self, expected: &'static str) -> RewriteError {
        RewriteError::WrongType {
            doc: self.doc,
            path: self.shown(),
            expected,
        }
    }

    /// `doc: path`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("{}: {}", self.doc, self.shown())
    }

    pub(crate) fn missing(&self) -> RewriteError {
        RewriteError::Missing {
            doc: self.doc,
            path: self.shown(),
        }
    }
}

/// `v` as an object, or an error naming `loc`.
pub(crate) fn obj<'a>(v: &'a Value, loc: &Loc) -> Result<&'a Map<String, Value>, RewriteError> {
    v.as_object().ok_or_else(|| loc.wrong("an object"))
}

pub(crate) fn obj_mut<'a>(
    v: &'a mut Value,
    loc: &Loc,
) -> Result<&'a mut Map<String, Value>, RewriteError> {
    v.as_object_mut().ok_or_else(|| loc.wrong("an object"))
}

/// `v` as a string, or an error naming `loc`.
pub(crate) fn string<'a>(v: &'a Value, loc: &Loc) -> Result<&'a str, RewriteError> {
    v.as_str().ok_or_else(|| loc.wrong("a string"))
}

/// Member `key` of `map`; `None` when absent or `null`.
pub(crate) fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

pub(crate) fn opt_obj<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    loc: &Loc,
) -> Result<Option<&'a Map<String, Value>>, RewriteError> {
    field(map, key).map(|v| obj(v, &loc.key(key))).transpose()
}

pub(crate) fn opt_arr<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    loc: &Loc,
) -> Result<Option<&'a Vec<Value>>, RewriteError> {
    field(map, key)
        .map(|v| v.as_array().ok_or_else(|| loc.key(key).wrong("an array")))
        .transpose()
}

pub(crate) fn opt_str<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    loc: &Loc,
) -> Result<Option<&'a str>, RewriteError> {
    field(map, key)
        .map(|v| string(v, &loc.key(key)))
        .transpose()
}

/// The strings of the array at member `key` (absent or `null`: none).
pub(crate) fn opt_str_list<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    loc: &Loc,
) -> Result<Vec<&'a str>, RewriteError> {
    let here = loc.key(key);
    let Some(items) = opt_arr(map, key, loc)? else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| string(v, &here.idx(i)))
        .collect()
}

/// Member `key` of `map` as an object, created empty when absent or `null`.
pub(crate) fn obj_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
    loc: &Loc,
) -> Result<&'a mut Map<String, Value>, RewriteError> {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .ok_or_else(|| loc.key(key).wrong("an object"))
}

/// Member `key` of `map` as an array, created empty when absent or `null`.
pub(crate) fn arr_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
    loc: &Loc,
) -> Result<&'a mut Vec<Value>, RewriteError> {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut()
        .ok_or_else(|| loc.key(key).wrong("an array"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_written_like_javascript() {
        let root = Loc::root("config.json");
        let loc = root.key("linux").key("namespaces").idx(2).key("type");
        assert_eq!(
            loc.wrong("a string").to_string(),
            "config.json: linux.namespaces[2].type must be a string"
        );
        let ann = root.key("annotations").key("run.boundary-runc.host-side");
        assert_eq!(
            ann.missing().to_string(),
            r#"config.json: annotations["run.boundary-runc.host-side"] is missing"#
        );
        assert_eq!(
            root.wrong("an object").to_string(),
            "config.json: the top level must be an object"
        );
    }

    #[test]
    fn null_is_absent_and_is_replaced_on_write() {
        let mut v = json!({"a": null, "b": 1});
        let loc = Loc::root("t");
        let m = v.as_object_mut().unwrap();
        assert!(opt_obj(m, "a", &loc).unwrap().is_none());
        assert!(opt_str_list(m, "a", &loc).unwrap().is_empty());
        arr_entry(m, "a", &loc).unwrap().push(json!(1));
        assert_eq!(m["a"], json!([1]));
        assert_eq!(
            obj_entry(m, "b", &loc).unwrap_err().to_string(),
            "t: b must be an object"
        );
    }
}
