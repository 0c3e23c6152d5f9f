//! What goes on ISOs and BIOS disks: file names, the loader configs
//! (ISOLINUX, GRUB) and which bootloader files each needs.
//!
//! Owns: the contents of `iso-bios`, `iso-efi` and `raw-bios` media. Must not
//! write filesystems or partition tables itself (`iso9660`, `fat`, `disk`)
//! nor make the kernel, initrd or UKI (`output`).

use crate::media::fat;
use crate::media::iso9660::{self, Boot, Hybrid, Spec};
use crate::media::source::Source;

/// The bootloader image's files each BIOS medium needs.
pub const ISOLINUX: &str = "bios/isolinux.bin";
pub const LDLINUX: &str = "bios/ldlinux.c32";
pub const ISOHYBRID_MBR: &str = "bios/isohdpfx.bin";
pub const GRUB_BOOT: &str = "bios/boot.img";
pub const GRUB_CORE: &str = "bios/core.img";

/// A volume id (d-characters) from a hash of the content.
fn volume_id(parts: &[&dyn Source]) -> std::io::Result<String> {
    let h = crate::media::source::content_hash(parts)?;
    Ok(format!("HULL_{}", hex::encode_upper(&h[..6])))
}

/// A command line as GRUB's parser reads it back: every word quoted.
fn grub_words(cmdline: &str) -> String {
    cmdline
        .split_whitespace()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The ISOLINUX config: boot the one entry at once, console on serial too.
/// The command line is one config line: line breaks in it become spaces.
fn isolinux_cfg(cmdline: &str) -> String {
    let cmdline = cmdline.replace(['\n', '\r'], " ");
    format!(
        "SERIAL 0 115200\nDEFAULT hull\nPROMPT 0\nTIMEOUT 0\nLABEL hull\n  KERNEL /boot/kernel\n  INITRD /boot/initrd.img\n  APPEND {cmdline}\n"
    )
}

/// The GRUB config on a BIOS disk's ESP (read by the core image).
pub fn grub_cfg(cmdline: &str) -> String {
    format!(
        "set timeout=0\nlinux /boot/kernel {}\ninitrd /boot/initrd.img\nboot\n",
        grub_words(cmdline)
    )
}

/// The ESP files of a BIOS disk: kernel, initrd and GRUB's config.
pub fn bios_disk_files<'a>(
    kernel: &'a dyn Source,
    initrd: &'a dyn Source,
    grub_cfg: &'a String,
) -> Vec<fat::File<'a>> {
    vec![
        ("BOOT/KERNEL", kernel),
        ("BOOT/INITRD.IMG", initrd),
        ("BOOT/GRUB/GRUB.CFG", grub_cfg as &dyn Source),
    ]
}

/// The bootloader image's files a BIOS ISO is made with.
pub struct IsolinuxFiles<'a> {
    pub isolinux: &'a [u8],
    pub ldlinux: &'a [u8],
    /// isohybrid's MBR code.
    pub mbr: &'a [u8],
}

/// A BIOS-bootable hybrid ISO: ISOLINUX starting kernel and initrd.
pub fn iso_bios<W: std::io::Write>(
    kernel: &dyn Source,
    initrd: &dyn Source,
    cmdline: &str,
    boot: &IsolinuxFiles<'_>,
    out: W,
) -> Result<u64, iso9660::IsoError> {
    let IsolinuxFiles {
        isolinux,
        ldlinux,
        mbr,
    } = *boot;
    let cfg = isolinux_cfg(cmdline);
    let spec = Spec {
        files: vec![
            ("ISOLINUX/ISOLINUX.BIN", &isolinux),
            ("ISOLINUX/LDLINUX.C32", &ldlinux),
            ("ISOLINUX/ISOLINUX.CFG", &cfg),
            ("BOOT/KERNEL", kernel),
            ("BOOT/INITRD.IMG", initrd),
        ],
        boot: vec![Boot::Bios("ISOLINUX/ISOLINUX.BIN")],
        hybrid: Hybrid::BiosMbr {
            code: mbr,
            loader: "ISOLINUX/ISOLINUX.BIN",
        },
        volume_id: volume_id(&[kernel, initrd, &cmdline])?,
    };
    iso9660::write(&spec, out)
}

/// A UEFI-bootable hybrid ISO: a FAT image holding the UKI; `content_hash`
/// (of the UKI, already hashed for the FAT volume id) seeds the volume id.
pub fn iso_efi<W: std::io::Write>(
    esp_image: &dyn Source,
    content_hash: &[u8],
    out: W,
) -> Result<u64, iso9660::IsoError> {
    let spec = Spec {
        files: vec![("BOOT/EFI.IMG", esp_image)],
        boot: vec![Boot::Efi("BOOT/EFI.IMG")],
        hybrid: Hybrid::EfiPartition("BOOT/EFI.IMG"),
        volume_id: volume_id(&[&content_hash])?,
    };
    iso9660::write(&spec, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_config_quotes_every_word() {
        let cfg = grub_cfg("console=ttyS0 x='a' $y");
        assert!(cfg.contains("linux /boot/kernel 'console=ttyS0' 'x='\\''a'\\''' '$y'"));
    }

    #[test]
    fn volume_ids_are_d_characters_from_the_content() {
        let a = volume_id(&[b"a"]).expect("hashes");
        assert_ne!(a, volume_id(&[b"b"]).expect("hashes"));
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_'));
    }
}
