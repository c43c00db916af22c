//! The driver's calls to the iommu-server and the pci-server: `iommu-api` and `pci-api`
//! requests in the byte wire format (`sluice_rt::wire`), replies checked and decoded.
//! iommu-server replies start with a `ReplyHeader`; pci-server replies with a little-endian
//! `u32` status; both are followed by the operation's reply struct.

use core::fmt;

use iommu_api::{IommuError, ReplyHeader};
use pci_api::PciError;
use sluice_rt::abi::syscall::Selector;
use sluice_rt::utcb::MessageBuffer;
use sluice_rt::wire::{self, Bytes};
use zerocopy::FromBytes;

/// Why a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The call did not get through (kernel refusal or a malformed reply).
    Call(wire::CallError),
    /// The iommu-server refused.
    Iommu(u32),
    /// The pci-server refused.
    Pci(u32),
    /// The reply is too short for what the operation returns.
    ShortReply,
    /// The reply should have carried a capability and did not.
    NoCapability,
    /// The device is not one this driver drives (edu or e1000e).
    UnknownDevice,
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Call(error) => write!(formatter, "{error}"),
            Self::Iommu(code) => match IommuError::from_code(*code) {
                Some(error) => write!(formatter, "iommu-server: {error}"),
                None => write!(formatter, "iommu-server: error {code}"),
            },
            Self::Pci(code) => match PciError::from_code(*code) {
                Some(error) => write!(formatter, "pci-server: {error}"),
                None => write!(formatter, "pci-server: error {code}"),
            },
            Self::ShortReply => write!(formatter, "reply too short"),
            Self::NoCapability => write!(formatter, "reply carried no capability"),
            Self::UnknownDevice => write!(formatter, "not a device this driver drives"),
        }
    }
}

/// Splits an iommu-server reply into its body, or the error it reports.
pub fn iommu_body(bytes: &[u8]) -> Result<&[u8], Failure> {
    let (header, body) = ReplyHeader::read_from_prefix(bytes).map_err(|_| Failure::ShortReply)?;
    match header.status {
        0 => Ok(body),
        code => Err(Failure::Iommu(code)),
    }
}

/// Splits a pci-server reply into its body, or the error it reports.
pub fn pci_body(bytes: &[u8]) -> Result<&[u8], Failure> {
    let (status, body) = u32::read_from_prefix(bytes).map_err(|_| Failure::ShortReply)?;
    match status {
        0 => Ok(body),
        code => Err(Failure::Pci(code)),
    }
}

/// Decodes a reply struct from the front of `body`.
pub fn reply<T: FromBytes>(body: &[u8]) -> Result<T, Failure> {
    T::read_from_prefix(body)
        .map(|(value, _)| value)
        .map_err(|_| Failure::ShortReply)
}

/// The two servers, through this thread's message buffer.
pub struct Servers {
    pub buffer: MessageBuffer,
    pub iommu: Selector,
    pub pci: Selector,
}

impl Servers {
    fn call(
        &mut self,
        portal: Selector,
        operation: u16,
        bytes: &[u8],
        capability: Option<(Selector, u64)>,
    ) -> Result<(Bytes, Option<Selector>), Failure> {
        wire::call(&mut self.buffer, portal, operation, bytes, capability).map_err(Failure::Call)
    }

    /// An iommu-server operation; returns the reply body.
    pub fn iommu(
        &mut self,
        operation: iommu_api::Operation,
        request: &[u8],
        capability: Option<(Selector, u64)>,
    ) -> Result<Bytes, Failure> {
        let (bytes, _) = self.call(self.iommu, operation as u16, request, capability)?;
        let body = iommu_body(bytes.as_slice())?;
        Bytes::new(body).map_err(|_| Failure::ShortReply)
    }

    /// A pci-server operation; returns the reply body and where a capability landed.
    pub fn pci(
        &mut self,
        operation: pci_api::Operation,
        request: &[u8],
    ) -> Result<(Bytes, Option<Selector>), Failure> {
        self.pci_with(operation, request, None)
    }

    /// A pci-server operation carrying a capability (selector, rights) to the server.
    pub fn pci_with(
        &mut self,
        operation: pci_api::Operation,
        request: &[u8],
        capability: Option<(Selector, u64)>,
    ) -> Result<(Bytes, Option<Selector>), Failure> {
        let (bytes, received) = self.call(self.pci, operation as u16, request, capability)?;
        let body = pci_body(bytes.as_slice())?;
        Ok((Bytes::new(body).map_err(|_| Failure::ShortReply)?, received))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn replies_are_split_by_their_status() {
        let mut bytes = ReplyHeader::default().as_bytes().to_vec();
        bytes.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(iommu_body(&bytes), Ok(&7u32.to_le_bytes()[..]));
        assert_eq!(reply::<u32>(iommu_body(&bytes).unwrap()), Ok(7));
        let refused = ReplyHeader {
            status: 6,
            reserved: 0,
        };
        assert_eq!(iommu_body(refused.as_bytes()), Err(Failure::Iommu(6)));
        assert_eq!(iommu_body(&[0; 3]), Err(Failure::ShortReply));
        assert_eq!(pci_body(&4u32.to_le_bytes()), Err(Failure::Pci(4)));
        assert_eq!(pci_body(&[0, 0, 0, 0, 9]), Ok(&[9u8][..]));
        assert_eq!(reply::<u64>(&[1, 2]), Err(Failure::ShortReply));
        assert!(format!("{}", Failure::Pci(4)).contains("does not own"));
    }
}
