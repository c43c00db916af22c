//! QEMU 7.2 device models xtask knows: what each is (port, bridge, endpoint), where it may
//! sit, and the facts the rules need (ACS, MSI, sub-page BARs, storage, SR-IOV).

/// What a model is in the PCI hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A function that does work (NIC, disk, ...): assignable.
    Endpoint,
    /// PCIe Root Port (PCIe Base spec 5.0 section 1.3.1): secondary bus is one link, slot 0.
    RootPort,
    /// Switch upstream port: its secondary bus holds the switch's downstream ports.
    UpstreamPort,
    /// Switch downstream port: secondary bus is one link, slot 0.
    DownstreamPort,
    /// PCIe-to-PCI bridge (PCI Express to PCI/PCI-X Bridge spec 1.0): conventional bus below.
    PciePciBridge,
    /// Conventional PCI-to-PCI bridge (PCI-to-PCI Bridge Architecture spec 1.2).
    PciBridge,
}

/// The kind of bus a device sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// q35 `pcie.0` (bus 0): root complex integrated devices and root ports.
    Root,
    /// Below a root or downstream port: one link, so only slot 0 is reachable.
    PortLink,
    /// Inside a switch, below the upstream port: downstream ports only.
    SwitchInternal,
    /// Below a PCIe-to-PCI or PCI-to-PCI bridge.
    Conventional,
}

/// Facts about one model.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub name: &'static str,
    pub kind: Kind,
    /// Has an ACS capability that isolates its secondary side (PCIe Base spec 5.0 section 6.12).
    pub acs: bool,
    /// Has MSI or MSI-X (so the pci-server never needs its INTx line).
    pub msi: bool,
    /// Has a memory BAR smaller than 4 KiB (firmware may pack another BAR into the page).
    pub sub_page_bar: bool,
    /// Takes `disk = "<size>"`.
    pub storage: bool,
    /// Takes `props.sriov_max_vfs` (VF offset 1, stride 1, as QEMU's hw/nvme/ctrl.c).
    pub sriov: bool,
}

const fn endpoint(name: &'static str, msi: bool, sub_page_bar: bool) -> Model {
    Model {
        name,
        kind: Kind::Endpoint,
        acs: false,
        msi,
        sub_page_bar,
        storage: false,
        sriov: false,
    }
}

/// Every model a manifest may name.
pub const MODELS: &[Model] = &[
    Model {
        name: "pcie-root-port",
        kind: Kind::RootPort,
        acs: true,
        msi: true,
        sub_page_bar: false,
        storage: false,
        sriov: false,
    },
    Model {
        name: "x3130-upstream",
        kind: Kind::UpstreamPort,
        acs: false,
        msi: true,
        sub_page_bar: false,
        storage: false,
        sriov: false,
    },
    // QEMU 7.2's xio3130-downstream has no ACS capability (it gained one in later versions).
    Model {
        name: "xio3130-downstream",
        kind: Kind::DownstreamPort,
        acs: false,
        msi: true,
        sub_page_bar: false,
        storage: false,
        sriov: false,
    },
    Model {
        name: "pcie-pci-bridge",
        kind: Kind::PciePciBridge,
        acs: false,
        msi: true,
        sub_page_bar: true,
        storage: false,
        sriov: false,
    },
    Model {
        name: "pci-bridge",
        kind: Kind::PciBridge,
        acs: false,
        msi: true,
        sub_page_bar: true,
        storage: false,
        sriov: false,
    },
    Model {
        name: "nvme",
        kind: Kind::Endpoint,
        acs: false,
        msi: true,
        sub_page_bar: false,
        storage: true,
        sriov: true,
    },
    Model {
        name: "virtio-blk-pci",
        kind: Kind::Endpoint,
        acs: false,
        msi: true,
        sub_page_bar: false,
        storage: true,
        sriov: false,
    },
    endpoint("edu", true, false),
    endpoint("e1000e", true, false),
    endpoint("e1000", false, false),
    endpoint("rtl8139", false, true),
    endpoint("ivshmem-plain", true, true),
    endpoint("ich9-intel-hda", true, false),
    endpoint("virtio-net-pci", true, false),
];

/// The model called `name`.
pub fn find(name: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.name == name)
}

impl Model {
    /// Whether the model provides a bus, and which.
    pub fn secondary_bus(&self) -> Option<BusKind> {
        match self.kind {
            Kind::Endpoint => None,
            Kind::RootPort | Kind::DownstreamPort => Some(BusKind::PortLink),
            Kind::UpstreamPort => Some(BusKind::SwitchInternal),
            Kind::PciePciBridge | Kind::PciBridge => Some(BusKind::Conventional),
        }
    }

    /// Whether the model may sit on a bus of this kind.
    pub fn allowed_on(&self, bus: BusKind) -> bool {
        match self.kind {
            Kind::RootPort => bus == BusKind::Root,
            Kind::UpstreamPort => bus == BusKind::PortLink,
            Kind::DownstreamPort => bus == BusKind::SwitchInternal,
            Kind::PciePciBridge => matches!(bus, BusKind::Root | BusKind::PortLink),
            Kind::PciBridge | Kind::Endpoint => bus != BusKind::SwitchInternal,
        }
    }

    /// Where the model may sit, for error messages.
    pub fn allowed_text(&self) -> &'static str {
        match self.kind {
            Kind::RootPort => "the root bus (omit `bus`)",
            Kind::UpstreamPort => "a pcie-root-port or xio3130-downstream",
            Kind::DownstreamPort => "an x3130-upstream",
            Kind::PciePciBridge => "the root bus, a pcie-root-port or an xio3130-downstream",
            Kind::PciBridge | Kind::Endpoint => {
                "the root bus, a root/downstream port, or a pcie-pci-bridge/pci-bridge"
            }
        }
    }
}

impl BusKind {
    pub fn describe(self) -> &'static str {
        match self {
            BusKind::Root => "the root bus",
            BusKind::PortLink => "a PCIe port's link",
            BusKind::SwitchInternal => "a switch's internal bus",
            BusKind::Conventional => "a conventional PCI bus",
        }
    }
}
