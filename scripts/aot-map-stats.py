#!/usr/bin/env python3
# Where the NativeAOT sidecar's size goes, from ILC's map: bytes and node counts per node kind (ConstructedEEType
# is the type data rehydrated into .hydrated at start, all resident; MethodCode the code), per defining assembly, per
# generic definition, and per assembly among the type arguments. Deterministic: compare two publishes by diffing.
# Usage: dotnet publish sidecar/ZeroTrustMesh.Sidecar -c Release -r linux-x64 -p:CppCompilerAndLinker=clang-14 -p:IlcGenerateMapFile=true -o OUT
#        scripts/aot-map-stats.py sidecar/ZeroTrustMesh.Sidecar/obj/Release/net10.0/linux-x64/native/ztm-sidecar.{map.xml,ilc.rsp}
import re, sys, collections, html
path, rsp = sys.argv[1], sys.argv[2]
asms = []
for line in open(rsp):
    line = line.strip()
    m = re.match(r'^(?:-r:)?(.+)\.dll$', line)
    if m: asms.append(m.group(1).split('/')[-1])
asms += ['S.P.CoreLib', 'S.P.Reflection.Execution', 'S.P.TypeLoader', 'S.P.StackTraceMetadata']
mangled = sorted({a.replace('.', '_').replace('-', '_') for a in asms}, key=len, reverse=True)
alt = re.compile(r'(?<=[<,])\s*(' + '|'.join(re.escape(a) for a in mangled) + ')_')
def owner(name):
    for a in mangled:
        if name.startswith(a + '_') : return a
    return '?'
node = re.compile(r'^  <(\w+) Name="([^"]*)" Length="(\d+)"')
kind_b = collections.Counter(); kind_n = collections.Counter()
by_owner = collections.defaultdict(collections.Counter)   # kind -> owner -> bytes
generic_def = collections.defaultdict(lambda: [0, 0])     # (kind,def) -> [count, bytes]
arg_asm = collections.defaultdict(collections.Counter)      # kind -> asm among args -> bytes
for line in open(path, encoding='utf-8'):
    m = node.match(line)
    if not m: continue
    kind, name, length = m.group(1), html.unescape(m.group(2)), int(m.group(3))
    kind_b[kind] += length; kind_n[kind] += 1
    n = re.sub(r'^_ZTV\d+', '', name); n = re.sub(r'^__GenericDict_', '', n)
    by_owner[kind][owner(n)] += length
    if '<' in n:
        d = n[:n.index('<')]
        e = generic_def[(kind, d)]; e[0] += 1; e[1] += length
        args = n[n.index('<'):]
        seen = set(alt.findall(args))
        for a in seen: arg_asm[kind][a] += length
def top(c, k=25): return '\n'.join(f'  {v:>10,}  {n}' for n, v in c.most_common(k))
print('== node kinds (bytes, count)')
for k, v in kind_b.most_common(20): print(f'  {v:>10,} {kind_n[k]:>7,}  {k}')
for kind in ['ConstructedEEType', 'MethodCode', 'MethodGenericDictionary', 'TypeGenericDictionary', 'WritableData']:
    print(f'== {kind} by defining assembly'); print(top(by_owner[kind], 30))
    print(f'== {kind}: generic definitions by bytes (count, bytes)')
    for (kk, d), (c, b) in sorted(generic_def.items(), key=lambda x: -x[1][1]):
        if kk != kind: continue
        print(f'  {b:>10,} {c:>6}  {d}')

    print(f'== {kind}: bytes of instantiations with this assembly among the type arguments'); print(top(arg_asm[kind], 25))
