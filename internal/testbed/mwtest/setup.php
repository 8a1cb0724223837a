<?php
// rcwatch test harness: creates the test accounts and their bot passwords in
// one PHP process (three maintenance scripts would bootstrap MediaWiki three
// times). Input: a JSON file named by the first argument:
//   [{"name":..., "password":..., "groups":[...], "appid":..., "secret":..., "grants":[...]}]
// Run with MW_CONFIG_FILE pointing at the wiki's LocalSettings.php.
require_once getenv( 'MW_INSTALL_PATH' ) . '/maintenance/Maintenance.php';

use MediaWiki\MediaWikiServices;

class RcwatchTestSetup extends Maintenance {
	public function __construct() {
		parent::__construct();
		$this->addArg( 'spec', 'JSON file with the accounts', true );
	}

	public function execute() {
		$spec = json_decode( file_get_contents( $this->getArg( 0 ) ), true );
		$services = MediaWikiServices::getInstance();
		foreach ( $spec as $acct ) {
			$user = $services->getUserFactory()->newFromName( $acct['name'] );
			if ( $user->idForName() === 0 ) {
				$status = $services->getAuthManager()->autoCreateUser(
					$user, MediaWiki\Auth\AuthManager::AUTOCREATE_SOURCE_MAINT, false );
				if ( !$status->isGood() ) {
					$this->fatalError( $acct['name'] . ': ' . $status->getMessage( false, false, 'en' )->text() );
				}
				SiteStatsUpdate::factory( [ 'users' => 1 ] )->doUpdate();
			}
			if ( !empty( $acct['password'] ) ) {
				$status = $user->changeAuthenticationData( [
					'username' => $user->getName(), 'password' => $acct['password'], 'retype' => $acct['password'] ] );
				if ( !$status->isGood() ) {
					$this->fatalError( $acct['name'] . ': ' . $status->getMessage( false, false, 'en' )->text() );
				}
			}
			if ( !empty( $acct['groups'] ) ) {
				$services->getUserGroupManager()->addUserToMultipleGroups( $user, $acct['groups'] );
			}
			foreach ( $acct['botpasswords'] ?? [] as $bpSpec ) {
				$bp = BotPassword::newUnsaved( [ 'username' => $user->getName(), 'appId' => $bpSpec['appid'],
					'grants' => $bpSpec['grants'] ] );
				if ( $bp === null ) {
					$this->fatalError( $acct['name'] . ': bot password creation failed' );
				}
				$status = $bp->save( 'insert', $services->getPasswordFactory()->newFromPlaintext( $bpSpec['secret'] ) );
				if ( !$status->isGood() ) {
					$this->fatalError( $acct['name'] . ': bot password ' . $bpSpec['appid'] . ': ' .
						print_r( $status->getErrors(), true ) );
				}
			}
			$this->output( "ok " . $acct['name'] . "\n" );
		}
	}
}

$maintClass = RcwatchTestSetup::class;
require_once RUN_MAINTENANCE_IF_MAIN;
