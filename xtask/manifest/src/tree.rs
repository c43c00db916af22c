//! A span-preserving TOML tree: serde + toml parse the text, every key and value keeps its
//! byte range so each diagnostic can point at the exact line and key.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// One TOML value with its span.
#[derive(Debug, Clone)]
pub struct Node {
    pub span: Range<usize>,
    pub value: Value,
}

/// The value kinds TOML has.
#[derive(Debug, Clone)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// TOML date-times have no meaning in a manifest; kept only to name the type.
    Datetime,
    Array(Vec<Node>),
    /// Keys in document order, each with its own span.
    Table(Vec<(Key, Node)>),
}

/// A key with its span.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub span: Range<usize>,
}

impl Value {
    /// Short type name for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime => "a date-time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Boolean(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Integer)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<NodeValue>>()? {
            items.push(node_of(item));
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let key = Key {
                span: key.span(),
                name: key.into_inner(),
            };
            // toml encodes date-times as a one-key map with this private field name.
            if key.name == "$__toml_private_datetime" {
                let _text: String = map.next_value()?;
                return Ok(Value::Datetime);
            }
            let value: Spanned<NodeValue> = map.next_value()?;
            entries.push((key, node_of(value)));
        }
        Ok(Value::Table(entries))
    }
}

/// Helper so `Spanned<NodeValue>` can be deserialized and turned into a [`Node`].
pub struct NodeValue(Value);

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor).map(NodeValue)
    }
}

fn node_of(spanned: Spanned<NodeValue>) -> Node {
    let span = spanned.span();
    Node {
        span,
        value: spanned.into_inner().0,
    }
}

/// Parse a whole document. The error carries toml's message and span.
pub fn parse_document(text: &str) -> Result<Node, toml::de::Error> {
    let root: NodeValue = toml::from_str(text)?;
    Ok(Node {
        span: 0..0,
        value: root.0,
    })
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_keep_spans() {
        let text = "[system]\nname = \"demo\"\n[[guest]]\nname = \"a\"\ncpus = [1, 2]\n";
        let root = parse_document(text).unwrap();
        let Value::Table(entries) = &root.value else {
            panic!("root not a table")
        };
        let (key, system) = &entries[0];
        assert_eq!(key.name, "system");
        let Value::Table(fields) = &system.value else {
            panic!()
        };
        let (name_key, name) = &fields[0];
        assert_eq!(&text[name_key.span.clone()], "name");
        assert_eq!(&text[name.span.clone()], "\"demo\"");
        assert_eq!(line_col(text, name_key.span.start), (2, 1));
        let (_, guests) = &entries[1];
        let Value::Array(items) = &guests.value else {
            panic!()
        };
        let Value::Table(guest) = &items[0].value else {
            panic!()
        };
        assert_eq!(line_col(text, guest[1].0.span.start), (5, 1));
    }
}
