/**
 * Hostile unit tests of issue 25: names that try to route to the wrong upstream through case or
 * names that are not package names.
 */
import { loadConfig } from '../../config';
import { UpstreamRoutes } from '../../replication/routes';

const routes = () =>
  new UpstreamRoutes(
    loadConfig({
      UPSTREAMS: JSON.stringify([
        { name: 'github', url: 'https://npm.pkg.github.com', packages: ['@company-gh/*'], mode: 'proxy', tokenEnv: 'GITHUB_PACKAGES_TOKEN' },
        { name: 'npmjs', url: 'https://registry.npmjs.org', packages: ['**'] },
      ]),
      GITHUB_PACKAGES_TOKEN: 'gh-token',
      REPLICATION_PRIVATE_SCOPES: '@corp',
    }),
  );

describe('routing', () => {
  it('routes a name without regard to case, as npm normalizes names', () => {
    expect(routes().upstreamFor('@Company-GH/tool')?.name).toBe('github');
    expect(routes().upstreamFor('@COMPANY-GH/tool')?.name).toBe('github');
    expect(routes().upstreamFor('@CORP/tool')).toBeNull();
  });

  it('routes nothing that is not a package name', () => {
    for (const name of ['@company-gh/../x', '@company-gh/x/../../y', '%40corp%2Fx', ' @corp/x', '@company-gh /x', '../x']) {
      expect([name, routes().upstreamFor(name)]).toEqual([name, null]);
      expect(routes().noRouteMessage(name)).toContain('never asked of an upstream');
    }
  });
});
