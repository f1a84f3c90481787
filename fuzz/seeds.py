#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ (fuzz/README.md): the official DMP examples,
trimmed where they are large, MTOM messages built from them, and TLS 1.2 transcripts whose
server chain is fuzz/relay/ (server-ca.pem issues the leaf in relay/leaf.der)."""
import os
import re
import shutil

ROOT = os.path.dirname(os.path.abspath(__file__))
EX = os.path.join(ROOT, "..", "tests", "fixtures", "dmp-package", "examples")
CORPUS = os.path.join(ROOT, "corpus")


def ex(name):
    with open(os.path.join(EX, name), "rb") as f:
        return f.read()


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def short(name):
    return re.sub(r"_-_.*_(requete|reponse)", r"-\1", name)


# TD3.1's answer lists 21 entries (212 KB): two are enough to seed the reader.
td31 = ex("TD3.1_-_Recherche_de_document_reponse.xml").decode()
ends = [m.end() for m in re.finditer(r"</ns4:ExtrinsicObject>", td31)]
td31_short = (td31[: ends[1]] + "\n</ns4:RegistryObjectList></ns3:AdhocQueryResponse></soap:Body></soap:Envelope>\n").encode()

mtom_raw = ex("TD2.1_-_Alimentation_requete.xml")
soap_root = mtom_raw.split(b"\r\n\r\n", 1)[-1] if b"\r\n\r\n" in mtom_raw else mtom_raw.split(b"\n\n", 1)[1]
soap_root = soap_root.split(b"------=_Part_9_20030738.1554380517598", 1)[0]

responses = [n for n in sorted(os.listdir(EX)) if n.endswith("reponse.xml") and not n.startswith("TD3.1")]
small_requests = [n for n in sorted(os.listdir(EX)) if n.endswith("requete.xml") and len(ex(n)) < 7000]
for n in responses:
    put("soap", short(n), ex(n))
for n in small_requests[:4] + responses[:4]:
    put("xml", short(n), ex(n))
for n in ["TD2.1-DocumentME2.xml", "TD2.1-SignatureXades.xml"]:
    put("xml", n, ex(n))
put("soap", "TD3.1-reponse-2-entries.xml", td31_short)

for n in sorted(os.listdir(os.path.join(EX, "Exemples_Jeton_VIHF"))):
    put("vihf", n, ex(os.path.join("Exemples_Jeton_VIHF", n)))
for n in ["TD0.2_-_Test_d_existence_requete.xml", "TD3.2_-_Consultation_d_un_document_requete.xml"]:
    put("vihf", short(n), ex(n))

put("cda", "TD2.1-DocumentME2.xml", ex("TD2.1-DocumentME2.xml"))
doc = mtom_raw.decode()
cda = doc[doc.index("<ClinicalDocument"): doc.index("</ClinicalDocument>") + len("</ClinicalDocument>")]
put("cda", "TD2.1-requete-document.xml", cda.encode())

for n in ["TD2.1_-_Alimentation_reponse.xml", "TD3.3c_-_Supprimer_un_document_reponse.xml",
          "TD3.3d_-_Archiver_un_document_reponse.xml", "TD3.2_-_Consultation_d_un_document_reponse.xml",
          "TD1.6_-_Liste_des_PS_autorises_ou_bloques_reponse.xml", "TD0.4_-_Liste_des_DMP_autorises_reponse.xml"]:
    put("ebrim", short(n), ex(n))
put("ebrim", "TD3.1-reponse-2-entries.xml", td31_short)
put("ebrim", "TD2.1-requete-envelope.xml", soap_root)

for n in ["TD0.2_-_Test_d_existence_reponse.xml", "TD0.5_-_Recherche_d_un_patient_sans_INS_reponse.xml",
          "TD0.2_-_Test_d_existence_requete.xml"]:
    put("hl7v3", short(n), ex(n))

# MTOM: first line the HTTP Content-Type, then the body (dmp_protocol::fuzzing::mtom).
ct = (b'multipart/related; type="application/xop+xml"; start="<rootpart@soapui.org>"; '
      b'start-info="application/soap+xml"; boundary="----=_Part_9_20030738.1554380517598"\n')
put("mtom", "TD2.1-requete.mime", ct + mtom_raw)
b = b"MIMEBoundary_fuzz"
small = (b"--" + b + b"\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
         b"Content-Transfer-Encoding: binary\r\nContent-ID: <root.message@dmp-gateway>\r\n\r\n"
         b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><Document xmlns=\"urn:ihe:iti:xds-b:2007\">"
         b"<xop:Include xmlns:xop=\"http://www.w3.org/2004/08/xop/include\" href=\"cid:doc1%40x\"/></Document>"
         b"</s:Body></s:Envelope>\r\n--" + b + b"\r\nContent-Type: text/xml\r\nContent-Transfer-Encoding: binary\r\n"
         b"Content-ID: <doc1@x>\r\n\r\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>\r\n--" + b + b"--\r\n")
put("mtom", "small-include.mime",
    b'multipart/related; boundary="' + b + b'"; type="application/xop+xml"; start="<root.message@dmp-gateway>"\n' + small)


# TLS 1.2 transcripts (the layout of cps_relay::sample_tls12_transcript).
def msg(t, body):
    n = len(body)
    return bytes([t, n >> 16 & 255, n >> 8 & 255, n & 255]) + body


def u16(v):
    return bytes([len(v) >> 8 & 255, len(v) & 255])


def transcript(host, chain):
    hello = bytes([3, 3]) + bytes([9] * 32) + bytes([0, 0, 2, 0xC0, 0x2F, 1, 0])
    if host is not None:
        name = b"\x00" + u16(host) + host
        lst = u16(name) + name
        ext = b"\x00\x00" + u16(lst) + lst
        hello += u16(ext) + ext
    certs = b"".join(bytes([len(c) >> 16, len(c) >> 8 & 255, len(c) & 255]) + c for c in chain)
    certificate = bytes([len(certs) >> 16, len(certs) >> 8 & 255, len(certs) & 255]) + certs
    return b"".join([
        msg(1, hello), msg(2, bytes([3, 3, 4, 5])), msg(11, certificate), msg(12, bytes([3, 0, 23])),
        msg(13, bytes([1, 1, 0, 2, 4, 1, 0, 0])), msg(14, b""), msg(11, bytes([0, 0, 0])),
        msg(16, bytes([7] * 66)),
    ])


with open(os.path.join(ROOT, "relay", "leaf.der"), "rb") as f:
    leaf = f.read()
with open(os.path.join(ROOT, "relay", "ca.der"), "rb") as f:
    ca = f.read()
put("relay_tls12", "allowed-sni.bin", transcript(b"dmp.example", [leaf, ca]))
put("relay_tls12", "allowed-ip-no-sni.bin", transcript(None, [leaf]))
put("relay_tls12", "other-host.bin", transcript(b"evil.example", [leaf, ca]))
put("relay_tls12", "tls13-client-verify.bin", b" " * 64 + b"TLS 1.3, client CertificateVerify\x00" + bytes(32))
