#!/usr/bin/env python3
"""Fails when the top-level modules of a crate import each other in a cycle.

Each crate's modules are meant to form layers (in the CLI: cli -> settings -> wiring ->
commands -> output), so that a module can be read knowing only what is below it. This reads
`crate::NAME` paths outside comments and `mod tests`, builds the graph of each crate, and
prints every cycle. Usage: scripts/module_cycles.py crates/*
"""
import re,os,sys,collections
def top_of(rel):
    mod=rel[:-3]
    if mod.endswith('/mod'): mod=mod[:-4]
    return mod.split('/')[0]
failed = False
for crate in sys.argv[1:]:
    src=os.path.join(crate,'src'); g=collections.defaultdict(set)
    for root,_,files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'): continue
            rel=os.path.relpath(os.path.join(root,f),src)
            top=top_of(rel)
            if top in ('main','lib'): continue
            text=open(os.path.join(root,f)).read()
            text=text.split('#[cfg(test)]\nmod tests')[0]
            code='\n'.join(l for l in text.split('\n') if not l.strip().startswith('//'))
            for m in re.finditer(r'crate::(\w+)',code):
                t=m.group(1)
                if t!=top and t[0].islower(): g[top].add(t)
    # cycle detection (DFS)
    cyc=[]
    def dfs(n,stack,seen):
        for m in g.get(n,()):
            if m in stack: cyc.append(stack[stack.index(m):]+[m]); continue
            if m in seen: continue
            seen.add(m); dfs(m,stack+[m],seen)
    for n in list(g): dfs(n,[n],set([n]))
    uniq=set(tuple(sorted(set(c))) for c in cyc)
    print(crate, 'modules', len(set(g)|{x for v in g.values() for x in v}), 'cycles:', sorted(uniq) or 'none')
    failed = failed or bool(uniq)
sys.exit(1 if failed else 0)
