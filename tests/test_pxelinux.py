"""PXELINUX text -> iPXE script (heckle_appliance.core.pxelinux).

Real iPXE firmware running these scripts is covered by test_netboot_e2e.py;
here each rule is pinned down on text.
"""

from heckle_appliance.core.pxelinux import HEADER, is_ipxe_script, to_ipxe

BASE = "http://10.0.0.1:8080/static/"


def body(script):
    assert script.startswith(HEADER)
    return script[len(HEADER):].splitlines()


def test_the_original_images_bootconfig():
    text = ("DEFAULT install\nLABEL install\n"
            "  KERNEL http://s/static/demo/vmlinuz\n"
            "  APPEND initrd=http://s/static/demo/initrd.gz console=ttyS0 flunky=http://s\n")
    assert body(to_ipxe(text, BASE)) == [
        "goto pxelinux-install",
        ":pxelinux-install",
        "kernel http://s/static/demo/vmlinuz initrd=initrd.gz console=ttyS0 flunky=http://s",
        "initrd http://s/static/demo/initrd.gz",
        "boot"]


def test_localboot_leaves_the_netboot():
    assert body(to_ipxe("DEFAULT local\nLABEL local\n  LOCALBOOT 0\n")) == [
        "goto pxelinux-local", ":pxelinux-local", "exit"]


def test_ipxe_and_gpxe_scripts_pass_untouched():
    for text in ("#!ipxe\nDEFAULT x\n", "#!gpxe\nkernel a\nboot\n", "\n#!ipxe\nexit\n"):
        assert is_ipxe_script(text)
        assert to_ipxe(text, BASE) is text


def test_default_picks_its_label_among_several_and_all_are_kept():
    text = "LABEL a\n KERNEL ka\nLABEL b\n LINUX kb\n APPEND x=1\nDEFAULT b\n"
    assert body(to_ipxe(text, BASE)) == [
        "goto pxelinux-b",
        ":pxelinux-a", f"kernel {BASE}ka", "boot",
        ":pxelinux-b", f"kernel {BASE}kb x=1", "boot"]


def test_without_default_the_first_label_boots():
    assert body(to_ipxe("label one\n  kernel k1\nlabel two\n  kernel k2\n"))[0] == "goto pxelinux-one"


def test_default_naming_no_label_is_a_kernel_command_line():
    assert body(to_ipxe("DEFAULT vmlinuz initrd=i.gz quiet\n", BASE)) == [
        "goto pxelinux-default", ":pxelinux-default",
        f"kernel {BASE}vmlinuz initrd=i.gz quiet", f"initrd {BASE}i.gz", "boot"]


def test_keywords_and_default_are_case_insensitive():
    assert body(to_ipxe("default Install\nLabel install\n  Kernel /k\n", BASE))[:3] == [
        "goto pxelinux-install", ":pxelinux-install", f"kernel {BASE}k"]


def test_initrd_directive_and_lists_each_get_a_line_and_a_name():
    text = ("LABEL x\n KERNEL k\n INITRD a.gz\n"
            " APPEND root=/dev/ram0 initrd=tftp://s/b.img,c.cpio?v=2 quiet\n")
    assert body(to_ipxe(text, BASE))[2:] == [
        f"kernel {BASE}k initrd=a.gz initrd=b.img initrd=c.cpio root=/dev/ram0 quiet",
        f"initrd {BASE}a.gz", "initrd tftp://s/b.img", f"initrd {BASE}c.cpio?v=2", "boot"]


def test_global_append_unless_the_label_has_its_own_or_a_dash():
    text = ("APPEND console=ttyS0\nLABEL a\n KERNEL k\nLABEL b\n KERNEL k\n APPEND quiet\n"
            "LABEL c\n KERNEL k\n APPEND -\n")
    kernels = [line for line in body(to_ipxe(text, "")) if line.startswith("kernel")]
    assert kernels == ["kernel k console=ttyS0", "kernel k quiet", "kernel k"]


def test_unknown_directives_are_kept_as_comments():
    text = ("# a comment\nUI menu.c32\nTIMEOUT 50\nLABEL a\n MENU LABEL Install\n"
            " KERNEL k\n IPAPPEND 2\n")
    assert body(to_ipxe(text, "")) == [
        "# skipped: UI menu.c32", "# skipped: TIMEOUT 50", "goto pxelinux-a",
        ":pxelinux-a", "# skipped: MENU LABEL Install", "# skipped: IPAPPEND 2",
        "kernel k", "boot"]


def test_nothing_to_boot_exits():
    assert body(to_ipxe("PROMPT 1\n")) == [
        "# skipped: PROMPT 1", "# no boot entry: leave the netboot", "exit"]
    assert body(to_ipxe("LABEL a\n APPEND quiet\n"))[-2:] == [
        "# label a has no kernel: leave the netboot", "exit"]


def test_label_names_become_safe_ipxe_labels():
    assert body(to_ipxe("DEFAULT my os\nLABEL my os\n KERNEL k\n"))[:2] == [
        "goto pxelinux-my_os", ":pxelinux-my_os"]
