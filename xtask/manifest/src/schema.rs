//! The schema: turns the span-preserving TOML tree into typed sections, collecting every
//! unknown key, wrong type, missing key and bad value instead of stopping at the first.

use crate::diagnostic::{did_you_mean, Violation};
use crate::rules;
use crate::tree::{Key, Node, Value};
use crate::units::{parse_addr, parse_bdf, parse_size, Bdf, SlotAddr};
use std::ops::Range;

/// A value with the span it came from.
#[derive(Debug, Clone)]
pub struct At<T> {
    pub value: T,
    pub span: Range<usize>,
}

/// `[[guest.pci]] functions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Functions {
    /// Only the named function.
    One,
    /// Every function present in the named device's slot (not SR-IOV VFs).
    All,
}

#[derive(Debug, Clone, Default)]
pub struct RawManifest {
    pub system_name: Option<At<String>>,
    pub system_span: Range<usize>,
    pub insecure_no_interrupt_remapping: bool,
    pub machine: Option<RawMachine>,
    pub guests: Vec<RawGuest>,
}

#[derive(Debug, Clone, Default)]
pub struct RawMachine {
    pub memory: Option<At<u64>>,
    pub cpus: Option<At<i64>>,
    pub iommu: Option<At<bool>>,
    pub devices: Vec<RawDevice>,
}

#[derive(Debug, Clone, Default)]
pub struct RawDevice {
    pub id: Option<At<String>>,
    pub model: Option<At<String>>,
    pub bus: Option<At<String>>,
    pub addr: Option<At<SlotAddr>>,
    pub multifunction: bool,
    pub disk: Option<At<u64>>,
    /// Scalar props as QEMU text, with the span of each key.
    pub props: Vec<(At<String>, String)>,
    pub span: Range<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct RawGuest {
    pub name: Option<At<String>>,
    pub memory: Option<At<u64>>,
    pub cpus: Option<At<Vec<At<i64>>>>,
    pub vcpus: Option<At<i64>>,
    pub kernel: Option<At<String>>,
    pub cmdline: String,
    pub pci: Vec<RawPci>,
}

#[derive(Debug, Clone)]
pub struct RawPci {
    pub device: Option<At<String>>,
    pub vbdf: Option<At<Bdf>>,
    pub functions: Functions,
}

const TOP_KEYS: &[&str] = &["system", "machine", "guest"];
const SYSTEM_KEYS: &[&str] = &["name", "insecure_no_interrupt_remapping"];
const MACHINE_KEYS: &[&str] = &["memory", "cpus", "iommu", "device"];
const DEVICE_KEYS: &[&str] = &[
    "id",
    "model",
    "bus",
    "addr",
    "multifunction",
    "disk",
    "props",
];
const GUEST_KEYS: &[&str] = &[
    "name", "memory", "cpus", "vcpus", "kernel", "cmdline", "pci",
];
const PCI_KEYS: &[&str] = &["device", "vbdf", "functions"];
/// Props that the manifest sets itself; giving them in `props` would fight the placement.
pub const RESERVED_PROPS: &[&str] = &[
    "id",
    "bus",
    "addr",
    "multifunction",
    "drive",
    "chassis",
    "chassis_nr",
    "subsys",
];

/// A table being read: checks unknown keys once, then hands out typed fields.
struct Table<'a> {
    entries: &'a [(Key, Node)],
    path: String,
    span: Range<usize>,
}

impl<'a> Table<'a> {
    fn open(
        node: &'a Node,
        path: &str,
        allowed: &[&str],
        out: &mut Vec<Violation>,
    ) -> Option<Self> {
        let Value::Table(entries) = &node.value else {
            out.push(wrong_type(path, node, "a table"));
            return None;
        };
        for (key, _) in entries {
            if !allowed.contains(&key.name.as_str()) {
                let hint = match did_you_mean(&key.name, allowed.iter().copied()) {
                    Some(near) => format!(
                        "did you mean `{near}`? Allowed keys here: {}",
                        allowed.join(", ")
                    ),
                    None => format!("remove it; allowed keys here: {}", allowed.join(", ")),
                };
                out.push(Violation::new(
                    rules::UNKNOWN_KEY,
                    join(path, &key.name),
                    key.span.clone(),
                    format!("unknown key `{}`", key.name),
                    hint,
                ));
            }
        }
        Some(Self {
            entries,
            path: path.to_owned(),
            span: node.span.clone(),
        })
    }

    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn string(&self, key: &str, out: &mut Vec<Violation>) -> Option<At<String>> {
        let node = self.get(key)?;
        match &node.value {
            Value::String(s) => Some(At {
                value: s.clone(),
                span: node.span.clone(),
            }),
            _ => {
                out.push(wrong_type(&self.key_path(key), node, "a string"));
                None
            }
        }
    }

    fn integer(&self, key: &str, out: &mut Vec<Violation>) -> Option<At<i64>> {
        let node = self.get(key)?;
        match &node.value {
            Value::Integer(i) => Some(At {
                value: *i,
                span: node.span.clone(),
            }),
            _ => {
                out.push(wrong_type(&self.key_path(key), node, "an integer"));
                None
            }
        }
    }

    fn boolean(&self, key: &str, out: &mut Vec<Violation>) -> Option<At<bool>> {
        let node = self.get(key)?;
        match &node.value {
            Value::Boolean(b) => Some(At {
                value: *b,
                span: node.span.clone(),
            }),
            _ => {
                out.push(wrong_type(&self.key_path(key), node, "true or false"));
                None
            }
        }
    }

    fn size(&self, key: &str, out: &mut Vec<Violation>) -> Option<At<u64>> {
        let node = self.get(key)?;
        let parsed = match &node.value {
            Value::String(s) => parse_size(s),
            Value::Integer(i) => u64::try_from(*i).ok().filter(|v| *v > 0),
            _ => {
                out.push(wrong_type(
                    &self.key_path(key),
                    node,
                    "a size string such as \"512M\"",
                ));
                return None;
            }
        };
        if parsed.is_none() {
            out.push(Violation::new(
                rules::BAD_SIZE,
                self.key_path(key),
                node.span.clone(),
                "not a valid size (zero, overflowing or unknown unit)",
                "write a positive number with an optional binary unit: \"64M\", \"2G\", \"512K\", or bytes",
            ));
        }
        parsed.map(|value| At {
            value,
            span: node.span.clone(),
        })
    }

    fn array_of_tables(&self, key: &str, out: &mut Vec<Violation>) -> Vec<&'a Node> {
        match self.get(key) {
            None => Vec::new(),
            Some(Node {
                value: Value::Array(items),
                ..
            }) => items.iter().collect(),
            Some(node) => {
                out.push(wrong_type(
                    &self.key_path(key),
                    node,
                    "an array of tables ([[...]])",
                ));
                Vec::new()
            }
        }
    }

    fn require<T>(
        &self,
        key: &str,
        value: Option<T>,
        hint: &str,
        out: &mut Vec<Violation>,
    ) -> Option<T> {
        if value.is_none() && self.get(key).is_none() {
            out.push(Violation::new(
                rules::MISSING_KEY,
                self.key_path(key),
                self.span.clone(),
                format!("required key `{key}` is missing"),
                format!("add `{key} = {hint}` to this table"),
            ));
        }
        value
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn wrong_type(path: &str, node: &Node, expected: &str) -> Violation {
    Violation::new(
        rules::WRONG_TYPE,
        path,
        node.span.clone(),
        format!("expected {expected}, found {}", node.value.kind()),
        format!(
            "write `{}` as {expected}",
            path.rsplit('.').next().unwrap_or(path)
        ),
    )
}

/// Read the whole document. Violations are appended to `out`; what could be read is returned.
pub fn read(root: &Node, out: &mut Vec<Violation>) -> RawManifest {
    let mut manifest = RawManifest::default();
    let Some(top) = Table::open(root, "", TOP_KEYS, out) else {
        return manifest;
    };
    match top.get("system") {
        Some(node) => {
            manifest.system_span = node.span.clone();
            if let Some(system) = Table::open(node, "system", SYSTEM_KEYS, out) {
                let name = system.string("name", out);
                manifest.system_name = system.require("name", name, "\"my-system\"", out);
                manifest.insecure_no_interrupt_remapping = system
                    .boolean("insecure_no_interrupt_remapping", out)
                    .is_some_and(|b| b.value);
            }
        }
        None => out.push(Violation::new(
            rules::MISSING_KEY,
            "system",
            0..0,
            "the [system] table is missing",
            "start the file with `[system]` and `name = \"my-system\"`",
        )),
    }
    if let Some(node) = top.get("machine") {
        manifest.machine = read_machine(node, out);
    }
    for (index, node) in top.array_of_tables("guest", out).into_iter().enumerate() {
        if let Some(guest) = read_guest(node, index, out) {
            manifest.guests.push(guest);
        }
    }
    manifest
}

fn read_machine(node: &Node, out: &mut Vec<Violation>) -> Option<RawMachine> {
    let table = Table::open(node, "machine", MACHINE_KEYS, out)?;
    let mut machine = RawMachine {
        memory: table.size("memory", out),
        cpus: table.integer("cpus", out),
        iommu: table.boolean("iommu", out),
        devices: Vec::new(),
    };
    for (index, device) in table.array_of_tables("device", out).into_iter().enumerate() {
        if let Some(device) = read_device(device, index, out) {
            machine.devices.push(device);
        }
    }
    Some(machine)
}

fn read_device(node: &Node, index: usize, out: &mut Vec<Violation>) -> Option<RawDevice> {
    let path = format!("machine.device[{index}]");
    let table = Table::open(node, &path, DEVICE_KEYS, out)?;
    let id = table.string("id", out);
    let model = table.string("model", out);
    let addr = table.string("addr", out).and_then(|text| {
        let parsed = parse_addr(&text.value);
        if parsed.is_none() {
            out.push(Violation::new(
                rules::BAD_ADDR,
                format!("{path}.addr"),
                text.span.clone(),
                format!("`{}` is not a slot address", text.value),
                "write \"SS.F\" in hex like QEMU's addr=: slot 00-1f, function 0-7, e.g. \"03.0\"",
            ));
        }
        parsed.map(|value| At {
            value,
            span: text.span,
        })
    });
    let mut device = RawDevice {
        id: table.require("id", id, "\"dev0\"", out),
        model: table.require("model", model, "\"nvme\"", out),
        bus: table.string("bus", out),
        addr,
        multifunction: table.boolean("multifunction", out).is_some_and(|b| b.value),
        disk: table.size("disk", out),
        props: Vec::new(),
        span: node.span.clone(),
    };
    if let Some(props) = table.get("props") {
        match &props.value {
            Value::Table(entries) => {
                for (key, value) in entries {
                    let key_path = format!("{path}.props.{}", key.name);
                    if RESERVED_PROPS.contains(&key.name.as_str()) {
                        out.push(Violation::new(
                            rules::PROP_RESERVED,
                            key_path.clone(),
                            key.span.clone(),
                            format!("`{}` is set by the manifest itself, not through props", key.name),
                            "use the device's own keys (id, bus, addr, multifunction, disk) and remove it from props",
                        ));
                        continue;
                    }
                    let text = match &value.value {
                        Value::String(s) => s.clone(),
                        Value::Integer(i) => i.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Boolean(b) => {
                            if *b {
                                "on".to_owned()
                            } else {
                                "off".to_owned()
                            }
                        }
                        other => {
                            out.push(Violation::new(
                                rules::PROPS_NOT_SCALAR,
                                key_path,
                                value.span.clone(),
                                format!(
                                    "props value is {}, QEMU properties are scalars",
                                    other.kind()
                                ),
                                "give a string, integer, float or boolean",
                            ));
                            continue;
                        }
                    };
                    device.props.push((
                        At {
                            value: key.name.clone(),
                            span: key.span.clone(),
                        },
                        text,
                    ));
                }
            }
            _ => out.push(wrong_type(
                &format!("{path}.props"),
                props,
                "an inline table { key = value }",
            )),
        }
    }
    Some(device)
}

fn read_guest(node: &Node, index: usize, out: &mut Vec<Violation>) -> Option<RawGuest> {
    let path = format!("guest[{index}]");
    let table = Table::open(node, &path, GUEST_KEYS, out)?;
    let name = table.string("name", out);
    let memory = table.size("memory", out);
    let kernel = table.string("kernel", out);
    let cpus = match table.get("cpus") {
        None => None,
        Some(Node {
            value: Value::Array(items),
            span,
        }) => {
            let mut list = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.value {
                    Value::Integer(cpu) => list.push(At {
                        value: cpu,
                        span: item.span.clone(),
                    }),
                    _ => out.push(wrong_type(
                        &format!("{path}.cpus[{i}]"),
                        item,
                        "a host CPU number",
                    )),
                }
            }
            Some(At {
                value: list,
                span: span.clone(),
            })
        }
        Some(other) => {
            out.push(wrong_type(
                &format!("{path}.cpus"),
                other,
                "an array of host CPU numbers",
            ));
            None
        }
    };
    let mut guest = RawGuest {
        name: table.require("name", name, "\"my-guest\"", out),
        memory: table.require("memory", memory, "\"256M\"", out),
        cpus: table.require("cpus", cpus, "[1]", out),
        vcpus: table.integer("vcpus", out),
        kernel: table.require("kernel", kernel, "\"builtin:probe\"", out),
        cmdline: table
            .string("cmdline", out)
            .map(|c| c.value)
            .unwrap_or_default(),
        pci: Vec::new(),
    };
    for (pci_index, pci) in table.array_of_tables("pci", out).into_iter().enumerate() {
        let pci_path = format!("{path}.pci[{pci_index}]");
        let Some(pci_table) = Table::open(pci, &pci_path, PCI_KEYS, out) else {
            continue;
        };
        let device = pci_table.string("device", out);
        let vbdf = pci_table.string("vbdf", out).and_then(|text| {
            let parsed = parse_bdf(&text.value);
            if parsed.is_none() {
                out.push(bad_bdf(&format!("{pci_path}.vbdf"), &text));
            }
            parsed.map(|value| At {
                value,
                span: text.span,
            })
        });
        let functions = match pci_table.string("functions", out) {
            None => Functions::One,
            Some(f) if f.value == "all" => Functions::All,
            Some(f) if f.value == "one" => Functions::One,
            Some(f) => {
                out.push(Violation::new(
                    rules::WRONG_TYPE,
                    format!("{pci_path}.functions"),
                    f.span,
                    format!("`{}` is not a functions mode", f.value),
                    "write \"all\" (every function of the slot) or \"one\" (just this function)",
                ));
                Functions::One
            }
        };
        guest.pci.push(RawPci {
            device: pci_table.require("device", device, "\"nvme0\"", out),
            vbdf,
            functions,
        });
    }
    Some(guest)
}

/// The violation for a BDF string that does not parse.
pub fn bad_bdf(path: &str, text: &At<String>) -> Violation {
    Violation::new(
        rules::BAD_BDF,
        path,
        text.span.clone(),
        format!("`{}` is not a BDF", text.value),
        "write \"BB:SS.F\" or \"0000:BB:SS.F\" in hex (slot 00-1f, function 0-7), e.g. \"00:05.0\"",
    )
}
