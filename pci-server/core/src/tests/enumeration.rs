//! Enumeration, BAR sizing and capability decoding against the device fakes.

use super::*;
use crate::listing::Listing;

#[test]
fn prints_q35_listing() {
    let (_, inventory) = q35();
    println!(
        "{}",
        Listing {
            inventory: &inventory,
            ownership: None
        }
    );
    let (_, inventory) = desktop();
    println!(
        "{}",
        Listing {
            inventory: &inventory,
            ownership: None
        }
    );
}
